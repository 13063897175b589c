//! Real packet loss: eight peers, each in a network namespace of its own,
//! joined by veth pairs to a bridge in one more namespace, with nftables
//! dropping 30% of the UDP datagrams that reach each peer.
//!
//! Everything the test makes lives in namespaces it creates and names
//! `rc<pid>-...`: the bridge, both ends of every veth pair, the addresses
//! (10.231.0.1 to 10.231.0.8, which exist only there; there is no route
//! out) and the nftables tables. Deleting the namespaces removes all of it;
//! a guard does that on every way out, after the peers are killed (a
//! namespace with a process still in it outlives its name).
//!
//! It needs root, `ip` and `nft`. Without them it prints a SKIP line and
//! passes, unless CI=true, where it fails: CI must run it.

mod common;

use common::*;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

const PEERS: usize = 8;
const PORT: u16 = 7610;
const SUBNET: &str = "10.231.0";
const LOSS_PERCENT: u32 = 30;
const PEER_INTERVAL: &str = "500ms";
/// Generous: READY needs every one of 56 ordered pairs to get a heartbeat
/// and an acknowledgement through 30% loss each way.
const READY_WAIT: Duration = Duration::from_secs(60);
/// The nftables table made in each peer's namespace.
const TABLE: &str = "rollcall_loss";

/// Runs a command to completion; Err with its output if it fails.
fn run_cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
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
fn ip(args: &[&str]) -> String {
    run_cmd("ip", args).unwrap_or_else(|e| panic!("{e}"))
}

/// `nft ARGS` inside namespace `ns`.
fn nft(ns: &str, args: &[&str]) -> String {
    let mut a = vec!["netns", "exec", ns, "nft"];
    a.extend_from_slice(args);
    ip(&a)
}

/// Why this environment cannot run the test, if it cannot.
fn missing_requirement() -> Option<String> {
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
fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: cannot run, and CI=true requires it to: {reason}");
    }
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
}

/// The namespaces made so far; deleting them deletes every interface in
/// them (the bridge, veth ends; a veth pair goes with either end) and
/// their nftables tables.
struct Namespaces {
    prefix: String,
    names: Vec<String>,
}

impl Namespaces {
    fn new() -> Namespaces {
        Namespaces {
            prefix: format!("rc{}-", std::process::id()),
            names: Vec::new(),
        }
    }

    /// Creates namespace `<prefix><suffix>`, with its loopback up.
    fn add(&mut self, suffix: &str) -> Result<String, String> {
        let name = format!("{}{suffix}", self.prefix);
        run_cmd("ip", &["netns", "add", &name])?;
        self.names.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Ok(name)
    }

    /// Deletes every namespace made; the errors, if any.
    fn remove_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some(name) = self.names.pop() {
            if let Err(e) = run_cmd("ip", &["netns", "del", &name]) {
                errors.push(e);
            }
        }
        errors
    }

    /// Namespaces with our prefix that still exist.
    fn leftovers(&self) -> Vec<String> {
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
    }
}

/// The packets counted by each rule of our input chain in `ns`:
/// (dropped, accepted).
fn counters(ns: &str) -> (u64, u64) {
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

/// Eight peers, each in its own namespace, every incoming UDP datagram
/// dropped with probability 30%: all must become READY (exactly once),
/// and exit 143 on SIGTERM; the drop rule must have dropped datagrams, at
/// roughly its rate.
///
/// How it can fail: a peer that never gets READY (a retransmission that
/// stops, an exchange that needs one lucky datagram), READY twice, a wrong
/// exit; or the loss not being real (no drops counted).
#[test]
fn eight_peers_under_random_loss() {
    const TEST: &str = "netns::eight_peers_under_random_loss";
    if let Some(reason) = missing_requirement() {
        return skip_or_fail(TEST, &reason);
    }
    let dir = TestDir::new("netns");
    // Declared before the peers: dropped after them, so no process is left
    // in a namespace when it is deleted.
    let mut net = Namespaces::new();
    let bridge_ns = match net.add("br") {
        Ok(ns) => ns,
        Err(e) => return skip_or_fail(TEST, &format!("cannot create a network namespace: {e}")),
    };
    ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);

    let ruleset = dir.write(
        "loss.nft",
        &format!(
            "table inet {TABLE} {{\n\
             \tchain input {{\n\
             \t\ttype filter hook input priority 0; policy accept;\n\
             \t\tmeta l4proto udp numgen random mod 100 < {LOSS_PERCENT} counter drop\n\
             \t\tmeta l4proto udp counter accept\n\
             \t}}\n\
             }}\n"
        ),
    );
    let ruleset = ruleset.display().to_string();
    let mut peer_ns = Vec::new();
    let mut entries = Vec::new();
    for i in 1..=PEERS {
        let ns = net.add(&format!("n{i}")).unwrap_or_else(|e| panic!("{e}"));
        let port_dev = format!("p{i}");
        // Both ends are created in their namespaces: nothing ever appears
        // in the namespace the test runs in.
        ip(&[
            "link", "add", &port_dev, "netns", &bridge_ns, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        ip(&["-n", &bridge_ns, "link", "set", &port_dev, "master", "br0"]);
        ip(&["-n", &bridge_ns, "link", "set", &port_dev, "up"]);
        let addr = format!("{SUBNET}.{i}");
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
        entries.push(format!("{addr}:{PORT}"));
        peer_ns.push(ns);
    }
    let hosts = dir.hosts("hosts", &entries);
    let hosts = hosts.display().to_string();

    let mut peers: Vec<Peer> = entries
        .iter()
        .zip(&peer_ns)
        .map(|(entry, ns)| {
            let args = [
                "--hosts",
                &hosts,
                "--name",
                entry,
                "--interval",
                PEER_INTERVAL,
                "--timeout",
                "120s",
            ];
            Peer::spawn_via(
                &format!("{entry} in {ns}"),
                &["ip", "netns", "exec", ns.as_str()],
                &args,
                Spawn::default(),
            )
        })
        .collect();
    // The guards must hold rollcall itself: `ip netns exec` execs it.
    let bin = std::fs::canonicalize(BIN).expect("canonical path of rollcall");
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
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

    let until = deadline(READY_WAIT);
    for p in peers.iter_mut() {
        p.expect_ready(until);
    }
    stop_all_after_one_ready(&mut peers);

    for p in peers.iter_mut() {
        let log = p.stderr_lines();
        let ready = log.iter().find(|l| l.contains("READY after"));
        eprintln!("{}: {}", p.label, ready.map_or("?", |l| l.as_str()));
    }

    let (mut dropped, mut accepted) = (0, 0);
    for ns in &peer_ns {
        let (d, a) = counters(ns);
        assert!(a > 0, "{ns}: no UDP datagram got through at all");
        dropped += d;
        accepted += a;
    }
    let total = dropped + accepted;
    let _ = writeln!(
        std::io::stderr(),
        "{TEST}: nftables dropped {dropped} of {total} datagrams"
    );
    assert!(dropped > 0, "the drop rule dropped nothing of {total}");
    if total >= 200 {
        // 30% of at least 200: far more than 5 standard deviations
        // inside 15%..45%.
        let percent = dropped * 100 / total;
        assert!(
            (15..=45).contains(&percent),
            "the drop rule dropped {percent}% ({dropped} of {total}), not about {LOSS_PERCENT}%"
        );
    }

    drop(peers);
    let errors = net.remove_all();
    assert!(errors.is_empty(), "teardown failed: {errors:#?}");
    let left = net.leftovers();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
