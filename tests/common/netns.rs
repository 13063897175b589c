//! Real packet loss between real processes: peers each in a network
//! namespace of their own, joined by veth pairs to a bridge in one more
//! namespace, with nftables dropping a share of the UDP datagrams that
//! reach each peer (`numgen random`).
//!
//! Everything a [`LossyNet`] makes lives in namespaces it creates and names
//! `rc<pid>-<tag>...`: the bridge, both ends of every veth pair, the
//! addresses (`<subnet>.1` to `<subnet>.<peers>`, which exist only there;
//! there is no route out) and the nftables tables. Deleting the namespaces
//! removes all of it. The guard kills its peers and then deletes the
//! namespaces on every way out of a test, a panic included (a namespace
//! with a process still in it outlives its name). For the ways out that
//! run no destructor (SIGINT from a terminal, SIGKILL, an abort), a
//! watchdog process started with the first namespace waits for the test
//! process to go and then does the same: it kills whatever still runs in
//! a namespace with this prefix and deletes the namespace.
//!
//! It needs root, `ip` and `nft`. Without them a test prints a SKIP line
//! and passes, unless CI=true, where it fails: CI must run it.
//!
//! Test files include it next to `mod common;` with
//! `#[path = "common/netns.rs"] mod netns;`.
#![allow(dead_code)]

use crate::common::{BIN, Peer, Spawn, WAIT, deadline, describe_status};
use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// The nftables table made in each peer's namespace.
pub const TABLE: &str = "rollcall_loss";

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct Layout<'a> {
    /// Part of every namespace name, after `rc<pid>-`: tells apart the
    /// networks of one test process ("" for none).
    pub tag: &'a str,
    /// The first three octets of the peers' addresses, such as "10.231.0";
    /// peer i (from 1) is `<subnet>.i`.
    pub subnet: &'a str,
    /// How many peers, each in a namespace of its own (1 to 250).
    pub peers: usize,
    /// The UDP port every peer listens on (at its own address).
    pub port: u16,
    /// The share of UDP datagrams reaching a peer that are dropped, in
    /// percent (0 to 100).
    pub loss_percent: u32,
}

/// Runs a command to completion; Err with its output if it fails.
pub fn run_cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}{}",
            args.join(" "),
            describe_status(out.status),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// `ip ARGS`, panicking with the output on failure.
pub fn ip(args: &[&str]) -> String {
    run_cmd("ip", args).unwrap_or_else(|e| panic!("{e}"))
}

/// `nft ARGS` inside namespace `ns`.
pub fn nft(ns: &str, args: &[&str]) -> String {
    let mut a = vec!["netns", "exec", ns, "nft"];
    a.extend_from_slice(args);
    ip(&a)
}

/// Why this environment cannot build namespaces, if it cannot.
pub fn missing_requirement() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, veth, nftables)".into());
    }
    for (tool, flag) in [("ip", "-V"), ("nft", "--version")] {
        if let Err(e) = run_cmd(tool, &[flag]) {
            return Some(format!("needs `{tool}`: {e}"));
        }
    }
    None
}

/// Skip (a visible line, past the test harness's capture) or, under
/// CI=true, fail.
pub fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: cannot run, and CI=true requires it to: {reason}");
    }
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
}

/// Waits for this test process to go (end of file on its stdin: the write
/// end is ours alone, and closes however we exit), then kills every
/// process in a namespace named `$1...` and deletes the namespace. It
/// ignores the signals a terminal sends, and runs in a process group of
/// its own, so that Ctrl-C stops the test and not the cleanup.
const WATCHDOG: &str = r#"trap '' HUP INT QUIT TERM
cat >/dev/null
ip netns list | while read -r ns _; do
	case $ns in "$1"*) ;; *) continue ;; esac
	for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null; done
	ip netns del "$ns" && echo "netns watchdog: deleted $ns left by an interrupted test" >&2
done
"#;

/// The cleanup that runs if this process ends without running its
/// destructors (see [`WATCHDOG`]).
struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    fn start(prefix: &str) -> Result<Watchdog, String> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .args(["-c", WATCHDOG, "sh", prefix])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the namespace watchdog (sh): {e}"))?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }
}

impl Drop for Watchdog {
    /// Lets it run its cleanup now (which finds nothing left when the
    /// namespaces were deleted first) and reaps it, waiting at most
    /// [`WAIT`].
    fn drop(&mut self) {
        drop(self.stdin.take());
        let until = deadline(WAIT);
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) | Err(_) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The namespaces made so far; deleting them deletes every interface in
/// them (the bridge, veth ends; a veth pair goes with either end) and
/// their nftables tables.
pub struct Namespaces {
    prefix: String,
    names: Vec<String>,
    /// Started with the first namespace; dropped after `names` are
    /// deleted.
    watchdog: Option<Watchdog>,
}

impl Namespaces {
    /// Namespaces named `rc<pid>-<tag>...`.
    pub fn new(tag: &str) -> Namespaces {
        Namespaces {
            prefix: format!("rc{}-{tag}", std::process::id()),
            names: Vec::new(),
            watchdog: None,
        }
    }

    /// Creates namespace `<prefix><suffix>`, with its loopback up.
    pub fn add(&mut self, suffix: &str) -> Result<String, String> {
        if self.watchdog.is_none() {
            self.watchdog = Some(Watchdog::start(&self.prefix)?);
        }
        let name = format!("{}{suffix}", self.prefix);
        run_cmd("ip", &["netns", "add", &name])?;
        self.names.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Ok(name)
    }

    /// Deletes every namespace made; the errors, if any.
    pub fn remove_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some(name) = self.names.pop() {
            if let Err(e) = run_cmd("ip", &["netns", "del", &name]) {
                errors.push(e);
            }
        }
        errors
    }

    /// Namespaces with our prefix that still exist.
    pub fn leftovers(&self) -> Vec<String> {
        let list = run_cmd("ip", &["netns", "list"]).unwrap_or_default();
        list.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&self.prefix))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for e in self.remove_all() {
            let _ = writeln!(std::io::stderr(), "netns teardown: {e}");
        }
        drop(self.watchdog.take());
    }
}

/// The packets counted by each rule of the input chain in `ns`:
/// (dropped, accepted).
pub fn counters(ns: &str) -> (u64, u64) {
    let text = nft(ns, &["list", "chain", "inet", TABLE, "input"]);
    let packets = |line: &str| -> u64 {
        let rest = &line[line.find("counter packets ").expect("a counter") + 16..];
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{ns}: cannot read counter in {line:?}"))
    };
    let mut dropped = None;
    let mut accepted = None;
    for line in text.lines().filter(|l| l.contains("counter packets ")) {
        if line.trim_end().ends_with("drop") {
            dropped = Some(packets(line));
        } else if line.trim_end().ends_with("accept") {
            accepted = Some(packets(line));
        }
    }
    match (dropped, accepted) {
        (Some(d), Some(a)) => (d, a),
        _ => panic!("{ns}: cannot find both counters in\n{text}"),
    }
}

/// A built network and the peers running in it. Dropping it kills the
/// peers, then deletes the namespaces (fields drop in order).
pub struct LossyNet {
    /// The peers [`LossyNet::start_peers`] started, one per entry, in
    /// order.
    pub peers: Vec<Peer>,
    /// `<subnet>.i:<port>`, i from 1: what the hosts file lists.
    pub entries: Vec<String>,
    /// The namespace each entry's peer runs in.
    pub peer_ns: Vec<String>,
    namespaces: Namespaces,
}

impl LossyNet {
    /// Builds `layout`'s namespaces, bridge, veth pairs, addresses and
    /// loss rules. Err (the reason) when this machine cannot: the test
    /// should [`skip_or_fail`]. Anything failing once the first namespace
    /// exists panics, and what was made is deleted.
    pub fn build(dir: &Path, layout: Layout) -> Result<LossyNet, String> {
        assert!(
            (1..=250).contains(&layout.peers),
            "{} peers: 1 to 250",
            layout.peers
        );
        assert!(layout.loss_percent <= 100, "loss over 100%");
        if let Some(reason) = missing_requirement() {
            return Err(reason);
        }
        let mut namespaces = Namespaces::new(layout.tag);
        let bridge_ns = namespaces
            .add("br")
            .map_err(|e| format!("cannot create a network namespace: {e}"))?;
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);

        let ruleset = dir.join(format!("loss{}.nft", layout.tag));
        std::fs::write(
            &ruleset,
            format!(
                "table inet {TABLE} {{\n\
                 \tchain input {{\n\
                 \t\ttype filter hook input priority 0; policy accept;\n\
                 \t\tmeta l4proto udp numgen random mod 100 < {} counter drop\n\
                 \t\tmeta l4proto udp counter accept\n\
                 \t}}\n\
                 }}\n",
                layout.loss_percent
            ),
        )
        .expect("write the nftables ruleset");
        let ruleset = ruleset.display().to_string();
        let mut peer_ns = Vec::new();
        let mut entries = Vec::new();
        for i in 1..=layout.peers {
            let ns = namespaces
                .add(&format!("n{i}"))
                .unwrap_or_else(|e| panic!("{e}"));
            let port_dev = format!("p{i}");
            // Both ends are created in their namespaces: nothing ever
            // appears in the namespace the test runs in.
            ip(&[
                "link", "add", &port_dev, "netns", &bridge_ns, "type", "veth", "peer", "name",
                "eth0", "netns", &ns,
            ]);
            ip(&["-n", &bridge_ns, "link", "set", &port_dev, "master", "br0"]);
            ip(&["-n", &bridge_ns, "link", "set", &port_dev, "up"]);
            let addr = format!("{}.{i}", layout.subnet);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            nft(&ns, &["-f", &ruleset]);
            entries.push(format!("{addr}:{}", layout.port));
            peer_ns.push(ns);
        }
        Ok(LossyNet {
            peers: Vec::new(),
            entries,
            peer_ns,
            namespaces,
        })
    }

    /// Starts one rollcall per entry, in the entry's namespace, with the
    /// arguments `args(entry)` gives; waits (bounded) for each to say it
    /// is bound, and checks that the process is rollcall itself (`ip netns
    /// exec` execs it), so that killing it kills the peer.
    pub fn start_peers(&mut self, args: impl Fn(&str) -> Vec<String>) {
        assert!(self.peers.is_empty(), "peers already started");
        for (entry, ns) in self.entries.iter().zip(&self.peer_ns) {
            let p = Peer::spawn_via(
                &format!("{entry} in {ns}"),
                &["ip", "netns", "exec", ns.as_str()],
                &args(entry),
                Spawn::default(),
            );
            self.peers.push(p);
        }
        let bin = std::fs::canonicalize(BIN).expect("canonical path of rollcall");
        let until = deadline(WAIT);
        for p in self.peers.iter_mut() {
            p.expect_started(until);
            let exe = std::fs::read_link(format!("/proc/{}/exe", p.pid()));
            assert_eq!(
                exe.ok().as_ref(),
                Some(&bin),
                "{}: pid {} is not rollcall: `ip netns exec` did not exec it",
                p.label,
                p.pid()
            );
        }
    }

    /// Each peer namespace's (dropped, accepted) counts so far, in entry
    /// order.
    pub fn counters(&self) -> Vec<(u64, u64)> {
        self.peer_ns.iter().map(|ns| counters(ns)).collect()
    }

    /// Kills the peers still running, deletes the namespaces, and asserts
    /// that all went and nothing of ours is left.
    pub fn teardown(mut self) {
        self.peers.clear();
        let errors = self.namespaces.remove_all();
        assert!(errors.is_empty(), "teardown failed: {errors:#?}");
        let left = self.namespaces.leftovers();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
    }
}
