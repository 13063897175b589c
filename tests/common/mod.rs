//! Shared helpers for the rollcall integration tests.
//!
//! # Ports
//!
//! Every test owns a fixed, unique *port block*: `port(BLOCK, i)` is
//! `20000 + 100 * BLOCK + i` (i in 1..=99). Ports 20000-29999 lie below the
//! kernel's ephemeral range (32768+), so nothing random takes them, and tests
//! that run in parallel never collide. When adding a test, take the next free
//! block and add it to this list:
//!
//! | block | test                                             |
//! |-------|--------------------------------------------------|
//! |  1    | cluster::two_peers_become_ready                  |
//! |  2    | cluster::five_peers_become_ready                 |
//! |  3    | cluster::sixteen_peers_become_ready              |
//! |  4    | cluster::absent_peer_times_out_with_124          |
//! |  5    | cluster::peers_started_seconds_apart             |
//! |  6    | cluster::restarted_peer_is_welcomed_back         |
//! |  7    | cluster::different_hosts_lists_never_ready       |
//! |  8    | cluster::barrier_five_peers_exit_zero            |
//! |  9    | cluster::single_peer_ready_at_once               |
//! | 10    | cluster::single_peer_barrier_exits_zero          |
//! | 11    | cluster::default_port_applies_to_portless_entry  |
//! | 20    | errors::bad_hosts_line_names_file_and_line       |
//! | 21    | errors::unreadable_hosts_file_names_file         |
//! | 22    | errors::duplicate_entry                          |
//! | 23    | errors::name_matching_no_entry                   |
//! | 24    | errors::port_in_use                              |
//! | 25    | errors::name_matching_several_entries            |
//! | 26    | errors::bad_duration_names_flag                  |
//! | 30    | lifecycle::sigterm_and_sigint_on_ready_peers     |
//! | 31    | lifecycle::sigterm_before_ready                  |
//! | 32    | lifecycle::sigint_before_ready                   |
//! | 33    | lifecycle::ready_file_lifecycle                  |
//! | 34    | lifecycle::env_vars_replace_flags                |
//! | 35    | lifecycle::flags_win_over_env_vars               |
//! | 36    | lifecycle::ready_to_stderr                       |
//! | 37    | job::a_command_that_exits_at_once_strands_no_other_peer |
//! | 38    | job::ctrl_c_in_a_terminal_reaches_the_command_once |
//! | 40    | faults::hostile_datagrams_are_dropped            |
//! | 41    | faults::flood_does_not_starve_heartbeats         |
//! | 42    | job::the_command_runs_after_ready_and_knows_its_place |
//! | 43    | job::the_command_status_is_rollcall_s             |
//! | 44    | job::a_command_that_cannot_run_exits_127_or_126   |
//! | 45    | job::stop_signals_are_passed_on_to_the_command    |
//! | 46    | job::the_timeout_does_not_end_a_running_command   |
//! | 47    | job::with_the_barrier_the_command_waits_for_every_peer |
//! | 48    | job::exit_on_down_stops_the_command_when_a_peer_dies |
//! | 49    | job::the_command_inherits_no_descriptor_of_rollcall |
//! | 50    | hardening::every_terminating_signal_removes_the_ready_file |
//! | 51    | hardening::sigusr1_reports_progress_and_ends_nothing |
//! | 52    | hardening::a_ready_file_that_cannot_be_made_is_refused_at_start |
//! | 53    | hardening::a_hosts_file_with_a_byte_order_mark_works |
//! | 54    | hardening::one_peer_written_two_ways_is_named_and_exits_2 |
//! | 55    | hardening::closed_stdout_and_stderr_never_abort_the_peer |
//! | 56    | output::a_json_run_is_one_object_per_event       |
//! | 57    | output::a_json_timeout_lists_what_each_missing_peer_lacks |
//! | 60    | auth::peers_sharing_a_secret_become_ready        |
//! | 61    | auth::peers_with_different_secrets_say_so_at_the_timeout |
//! | 62    | auth::a_peer_without_the_secret_is_named         |
//! | 63    | auth::an_unreadable_or_empty_secret_file_is_a_usage_error |
//! | 64    | membership::a_killed_peer_is_reported_down_by_every_other |
//! | 65    | membership::a_peer_that_leaves_is_reported_left_not_down |
//! | 66    | membership::a_peer_restarted_after_leaving_is_welcomed_back |
//! | 67    | membership::a_stopped_peer_is_down_then_up_when_continued |
//! | 68-69 | (reserved for membership)                        |
//! | 70    | logging::a_peer_whose_stderr_reader_has_gone_carries_on |
//! | 71    | logging::a_stalled_stderr_does_not_stall_the_peer |
//! | 72    | logging::peers_sharing_one_stderr_file_write_whole_lines |
//! | 80    | adversity::barrier_never_exits_zero_without_every_peer |
//! | 81    | adversity::ready_needs_every_peer_alive_after_a_kill |
//! | 82    | adversity::ready_needs_every_peer_alive_while_one_is_stopped |
//! | 83    | adversity::ipv4_and_ipv6_peers_become_ready      |
//! | 84    | adversity::localhost_and_ipv6_peers_become_ready |
//! | 85    | adversity::two_loopback_addresses_become_ready   |
//! | 86    | adversity::ipv4_and_ipv6_peers_with_a_secret_become_ready |
//! | 87    | adversity::warnings_stay_bounded_under_alternating_hostile_input |
//! | 88    | adversity::a_restart_with_its_clock_behind_is_welcomed_and_the_old_run_is_not |
//! | 89    | adversity::a_fifo_as_secret_file_is_refused_at_once |
//! | 90    | adversity::dev_zero_as_secret_file_is_refused_at_once |
//! | 91    | adversity::an_oversized_hosts_file_is_refused    |
//! | 92    | adversity::a_port_taken_by_another_cluster_is_named_as_such |
//! | 93    | adversity::thousands_of_unresolvable_names_use_few_threads |
//! | 94    | adversity::a_process_started_after_the_barrier_passed_is_told_so |
//! | 95    | detect::a_killed_peer_is_reported_down_within_3s (`--ignored`) |
//! | 99    | the unit tests of src/sockets.rs                 |
//!
//! `netns::eight_peers_under_random_loss` and
//! `detect::sixteen_live_peers_under_20_percent_loss_are_never_down` need no
//! block: their peers run in network namespaces of their own, on addresses
//! that exist only there.
//!
//! Tests without a block (`--help`, `--version`, unknown flag, bare `-h`,
//! a FIFO or `/dev/zero` as the hosts file) never get as far as binding a
//! socket.
//!
//! # Processes
//!
//! [`Peer`] wraps a spawned rollcall. Reader threads forward every stdout and
//! stderr line into an mpsc channel; all waits are `recv_timeout` under a
//! bounded deadline. Dropping a `Peer` kills and reaps the process, so a
//! panicking test leaves nothing behind.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

/// Heartbeat interval used by all tests.
pub const INTERVAL: &str = "200ms";

/// Generous bound for anything that should happen "soon".
pub const WAIT: Duration = Duration::from_secs(15);

/// Environment variables rollcall reads; cleared for every child so the
/// test runner's environment cannot leak in.
pub const ENV_VARS: &[&str] = &[
    "ROLLCALL_HOSTS",
    "ROLLCALL_NAME",
    "ROLLCALL_PORT",
    "ROLLCALL_TIMEOUT",
    "ROLLCALL_INTERVAL",
    "ROLLCALL_BARRIER",
    "ROLLCALL_READY_FILE",
    "ROLLCALL_READY_TO",
    "ROLLCALL_BIND",
    "ROLLCALL_SECRET_FILE",
    "ROLLCALL_LOG",
];

/// Port `i` of port block `block` (see the table above).
pub fn port(block: u16, i: u16) -> u16 {
    assert!((1..100).contains(&i), "port index {i} out of block");
    assert!(block < 100, "block {block} out of range");
    20000 + 100 * block + i
}

/// `127.0.0.1:PORT` entries for peers 1..=n of `block`.
pub fn entries(block: u16, n: u16) -> Vec<String> {
    (1..=n)
        .map(|i| format!("127.0.0.1:{}", port(block, i)))
        .collect()
}

pub fn deadline(d: Duration) -> Instant {
    Instant::now() + d
}

/// A per-test temporary directory, removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(test: &str) -> TestDir {
        let path =
            std::env::temp_dir().join(format!("rollcall-test-{}-{}", std::process::id(), test));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create test dir");
        TestDir { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.file(name);
        fs::write(&p, contents).expect("write test file");
        p
    }

    /// A hosts file listing `entries`, with a comment and a blank line so
    /// every test also exercises comment handling.
    pub fn hosts(&self, name: &str, entries: &[String]) -> PathBuf {
        let mut s = String::from("# rollcall integration test hosts file\n\n");
        for e in entries {
            s.push_str(e);
            s.push('\n');
        }
        self.write(name, &s)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

enum Event {
    Line(Stream, String),
    Eof(Stream),
}

fn forward<R: Read + Send + 'static>(r: R, stream: Stream, tx: Sender<Event>) {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.ends_with(b"\n") {
                        buf.pop();
                    }
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if tx.send(Event::Line(stream, line)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Event::Eof(stream));
    });
}

/// How to start a rollcall process.
#[derive(Default)]
pub struct Spawn<'a> {
    pub env: &'a [(&'a str, &'a str)],
    pub cwd: Option<&'a Path>,
}

/// A running rollcall process; killed and reaped on drop.
pub struct Peer {
    pub label: String,
    child: Child,
    rx: Receiver<Event>,
    stdout: Vec<String>,
    stderr: Vec<String>,
    open: usize,
    status: Option<ExitStatus>,
}

impl Peer {
    pub fn spawn<S: AsRef<OsStr>>(label: &str, args: &[S]) -> Peer {
        Peer::spawn_with(label, args, Spawn::default())
    }

    pub fn spawn_with<S: AsRef<OsStr>>(label: &str, args: &[S], opts: Spawn) -> Peer {
        let no_prefix: [&str; 0] = [];
        Peer::spawn_via(label, &no_prefix, args, opts)
    }

    /// Start rollcall behind a `prefix` command that execs it, such as
    /// `ip netns exec NS`: the command run is `prefix[0] prefix[1..] BIN
    /// args`. The prefix must exec rather than fork, so that the process
    /// this guard kills is rollcall itself. An empty prefix runs BIN
    /// directly, as [`Peer::spawn_with`] does.
    pub fn spawn_via<P: AsRef<OsStr>, S: AsRef<OsStr>>(
        label: &str,
        prefix: &[P],
        args: &[S],
        opts: Spawn,
    ) -> Peer {
        Peer::start(label, prefix, args, opts, None)
    }

    /// Start rollcall with its stderr going to `stderr` (a pipe or file the
    /// test holds) rather than to this guard: only stdout is collected.
    pub fn spawn_with_stderr<S: AsRef<OsStr>>(label: &str, args: &[S], stderr: Stdio) -> Peer {
        let no_prefix: [&str; 0] = [];
        Peer::start(label, &no_prefix, args, Spawn::default(), Some(stderr))
    }

    fn start<P: AsRef<OsStr>, S: AsRef<OsStr>>(
        label: &str,
        prefix: &[P],
        args: &[S],
        opts: Spawn,
        stderr: Option<Stdio>,
    ) -> Peer {
        let forward_stderr = stderr.is_none();
        let mut cmd = match prefix.split_first() {
            None => Command::new(BIN),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.unwrap_or_else(Stdio::piped));
        for v in ENV_VARS {
            cmd.env_remove(v);
        }
        for (k, v) in opts.env {
            cmd.env(k, v);
        }
        if let Some(dir) = opts.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            let program = Path::new(cmd.get_program()).display();
            panic!("spawn {program} for {label}: {e}")
        });
        let (tx, rx) = channel();
        forward(child.stdout.take().unwrap(), Stream::Stdout, tx.clone());
        if forward_stderr {
            forward(child.stderr.take().unwrap(), Stream::Stderr, tx);
        }
        Peer {
            label: label.to_string(),
            child,
            rx,
            stdout: Vec::new(),
            stderr: Vec::new(),
            open: if forward_stderr { 2 } else { 1 },
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn record(&mut self, ev: Event) {
        match ev {
            Event::Line(Stream::Stdout, l) => self.stdout.push(l),
            Event::Line(Stream::Stderr, l) => self.stderr.push(l),
            Event::Eof(_) => self.open -= 1,
        }
    }

    /// Receive one event before `until`; false on timeout or when both
    /// streams are closed.
    fn pump(&mut self, until: Instant) -> bool {
        if self.open == 0 {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(ev) => {
                self.record(ev);
                true
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Take in everything already received, without waiting.
    pub fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.record(ev);
        }
    }

    fn lines(&self, s: Stream) -> &[String] {
        match s {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    /// Wait until `s` has carried a line matching `pred` (lines seen before
    /// the call count too). None if the deadline passes or the process
    /// closes its output first.
    pub fn wait_for_line(
        &mut self,
        s: Stream,
        pred: impl Fn(&str) -> bool,
        until: Instant,
    ) -> Option<String> {
        self.wait_for_line_from(s, 0, pred, until)
    }

    /// How many lines `s` has carried so far: a mark for
    /// [`Peer::wait_for_line_from`], to wait for a line that comes after
    /// it (the second `down` of one entry, not the first again).
    pub fn mark(&mut self, s: Stream) -> usize {
        self.drain();
        self.lines(s).len()
    }

    /// Like [`Peer::wait_for_line`], but only lines from the `from`-th on
    /// (a [`Peer::mark`]) count.
    pub fn wait_for_line_from(
        &mut self,
        s: Stream,
        from: usize,
        pred: impl Fn(&str) -> bool,
        until: Instant,
    ) -> Option<String> {
        let mut checked = from.min(self.lines(s).len());
        loop {
            let lines = self.lines(s);
            if let Some(l) = lines[checked..].iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            checked = lines.len();
            if !self.pump(until) {
                self.drain();
                return self.lines(s)[checked..].iter().find(|l| pred(l)).cloned();
            }
        }
    }

    /// Like `wait_for_line`, but panics (with the peer's output) on failure.
    pub fn expect_line(
        &mut self,
        s: Stream,
        what: &str,
        pred: impl Fn(&str) -> bool,
        until: Instant,
    ) -> String {
        match self.wait_for_line(s, pred, until) {
            Some(l) => l,
            None => panic!("{}: no {s:?} line {what}\n{}", self.label, self.describe()),
        }
    }

    pub fn expect_ready(&mut self, until: Instant) {
        self.expect_line(Stream::Stdout, "READY", |l| l == "READY", until);
    }

    /// Wait for the start log line (`... bound to ADDR`).
    pub fn expect_started(&mut self, until: Instant) -> String {
        self.expect_line(
            Stream::Stderr,
            "containing `bound to`",
            |l| l.contains(" bound to "),
            until,
        )
    }

    /// Wait for the process to exit: first for both output streams to
    /// close (an event), then for the exit status, all before `until`.
    /// Panics if it is still running at the deadline.
    pub fn wait_exit(&mut self, until: Instant) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        while self.open > 0 && self.pump(until) {}
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.drain();
                self.status = Some(st);
                return st;
            }
            if Instant::now() >= until {
                panic!(
                    "{}: still running at deadline\n{}",
                    self.label,
                    self.describe()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait for exit and assert the exit code (not death by a signal).
    pub fn expect_exit(&mut self, code: i32, until: Instant) {
        let st = self.wait_exit(until);
        if st.code() != Some(code) {
            panic!(
                "{}: expected exit code {code}, got {}\n{}",
                self.label,
                describe_status(st),
                self.describe()
            );
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait().expect("try_wait") {
            Some(st) => {
                self.status = Some(st);
                false
            }
            None => true,
        }
    }

    /// Send a signal by name (`TERM`, `INT`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    /// SIGKILL and reap.
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let st = self.child.wait().expect("wait after kill");
        self.status = Some(st);
    }

    /// Wait for exit with `code`, and check that stdout held exactly one
    /// line, `READY`.
    pub fn expect_exit_after_one_ready(&mut self, code: i32, until: Instant) {
        self.expect_exit(code, until);
        let out = self.stdout_lines();
        assert_eq!(
            out,
            vec!["READY"],
            "{}: stdout\n{}",
            self.label,
            self.describe()
        );
    }

    pub fn stdout_lines(&mut self) -> Vec<String> {
        self.drain();
        self.stdout.clone()
    }

    pub fn stderr_lines(&mut self) -> Vec<String> {
        self.drain();
        self.stderr.clone()
    }

    pub fn stderr_text(&mut self) -> String {
        self.drain();
        self.stderr.join("\n")
    }

    pub fn stdout_text(&mut self) -> String {
        self.drain();
        self.stdout.join("\n")
    }

    /// The output received so far (call after a `drain`, or after a wait).
    pub fn describe(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}\n---",
            self.label,
            self.stdout.join("\n"),
            self.label,
            self.stderr.join("\n")
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn describe_status(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("death by signal {s}"),
        _ => format!("{st:?}"),
    }
}

/// Arguments for running as `entry` of `hosts`, with the tests' short
/// interval, the given total timeout and extra flags.
pub fn peer_args(hosts: &Path, entry: &str, timeout: &str, extra: &[&str]) -> Vec<String> {
    peer_args_every(hosts, entry, INTERVAL, timeout, extra)
}

/// As [`peer_args`], with heartbeat interval `interval` instead of the
/// tests' short one.
pub fn peer_args_every(
    hosts: &Path,
    entry: &str,
    interval: &str,
    timeout: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut a = vec![
        "--hosts".to_string(),
        hosts.display().to_string(),
        "--name".to_string(),
        entry.to_string(),
        "--interval".to_string(),
        interval.to_string(),
        "--timeout".to_string(),
        timeout.to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// SIGTERM every peer at once, then check that each exits 143 having
/// printed exactly one line, `READY`.
pub fn stop_all_after_one_ready(peers: &mut [Peer]) {
    for p in peers.iter() {
        p.signal("TERM");
    }
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_exit_after_one_ready(143, until);
    }
}

/// Start one peer per entry in `which` (indexes into `entries`).
pub fn start_peers(
    hosts: &Path,
    entries: &[String],
    which: std::ops::Range<usize>,
    timeout: &str,
    extra: &[&str],
) -> Vec<Peer> {
    start_peers_every(hosts, entries, which, INTERVAL, timeout, extra)
}

/// As [`start_peers`], with heartbeat interval `interval`.
pub fn start_peers_every(
    hosts: &Path,
    entries: &[String],
    which: std::ops::Range<usize>,
    interval: &str,
    timeout: &str,
    extra: &[&str],
) -> Vec<Peer> {
    which
        .map(|i| {
            Peer::spawn(
                &format!("peer{} ({})", i + 1, entries[i]),
                &peer_args_every(hosts, &entries[i], interval, timeout, extra),
            )
        })
        .collect()
}

/// Waits until each of `peers` has carried a line on `s` matching `pred`,
/// after its mark `from[k]` (see [`Peer::mark`]), all before `until`.
/// For each peer, when the test read its line (to a few milliseconds: the
/// peers are polled in turn) and the line; None for a peer without one.
pub fn wait_each_line(
    peers: &mut [&mut Peer],
    s: Stream,
    from: &[usize],
    pred: impl Fn(&str) -> bool,
    until: Instant,
) -> Vec<Option<(Instant, String)>> {
    assert_eq!(peers.len(), from.len(), "one mark per peer");
    let mut seen: Vec<Option<(Instant, String)>> = vec![None; peers.len()];
    while seen.iter().any(Option::is_none) && Instant::now() < until {
        for (k, p) in peers.iter_mut().enumerate() {
            if seen[k].is_some() {
                continue;
            }
            let slice = deadline(Duration::from_millis(1)).min(until);
            if let Some(l) = p.wait_for_line_from(s, from[k], &pred, slice) {
                seen[k] = Some((Instant::now(), l));
            }
        }
    }
    seen
}

/// Wait until any of `peers` carries a line on `s` matching `pred`.
/// Returns the index of the peer and the line.
pub fn wait_any_line(
    peers: &mut [&mut Peer],
    s: Stream,
    pred: impl Fn(&str) -> bool,
    until: Instant,
) -> Option<(usize, String)> {
    loop {
        for (i, p) in peers.iter_mut().enumerate() {
            let slice = deadline(Duration::from_millis(20)).min(until);
            if let Some(l) = p.wait_for_line(s, &pred, slice) {
                return Some((i, l));
            }
        }
        if Instant::now() >= until {
            return None;
        }
    }
}

/// Run rollcall to completion (for usage/config errors): returns the exit
/// status, stdout and stderr. Bounded by `WAIT`.
pub fn run<S: AsRef<OsStr>>(label: &str, args: &[S], opts: Spawn) -> (ExitStatus, Peer) {
    let mut p = Peer::spawn_with(label, args, opts);
    let st = p.wait_exit(deadline(WAIT));
    (st, p)
}

/// Assert a usage/config error: exit 2, and stderr is one line starting
/// `rollcall: ` that contains every string in `needles`. Returns that line.
pub fn expect_usage_error(p: &mut Peer, st: ExitStatus, needles: &[&str]) -> String {
    let desc = p.describe();
    assert_eq!(
        st.code(),
        Some(2),
        "{}: expected exit code 2, got {}\n{desc}",
        p.label,
        describe_status(st)
    );
    let lines: Vec<String> = p
        .stderr_lines()
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{}: expected exactly one stderr line\n{desc}",
        p.label
    );
    let line = &lines[0];
    assert!(
        line.starts_with("rollcall: "),
        "{}: stderr line does not start with `rollcall: `\n{desc}",
        p.label
    );
    for n in needles {
        assert!(
            line.contains(n),
            "{}: stderr line does not contain {n:?}\n{desc}",
            p.label
        );
    }
    assert!(
        p.stdout_lines().is_empty(),
        "{}: stdout should be empty\n{desc}",
        p.label
    );
    line.clone()
}

/// `127.0.0.1:port`.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

static SERIAL: Mutex<()> = Mutex::new(());

/// For tests that load the CPU on purpose: one at a time within a test
/// binary, so that none starves another's peers.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A peer's output for a failure message: stdout, and the first and last
/// lines of its log (a log may hold thousands).
pub fn brief(p: &mut Peer) -> String {
    const HEAD: usize = 20;
    const TAIL: usize = 20;
    let out = p.stdout_lines();
    let log = p.stderr_lines();
    let shown = if log.len() <= HEAD + TAIL {
        log.join("\n")
    } else {
        format!(
            "{}\n... {} more lines ...\n{}",
            log[..HEAD].join("\n"),
            log.len() - HEAD - TAIL,
            log[log.len() - TAIL..].join("\n")
        )
    };
    format!(
        "--- {} stdout ---\n{}\n--- {} stderr ---\n{shown}\n---",
        p.label,
        out.join("\n"),
        p.label
    )
}

/// The log lines at `level` (`WARN`, `ERROR`, ...).
pub fn lines_at(p: &mut Peer, level: &str) -> Vec<String> {
    let tag = format!(" {level} ");
    p.stderr_lines()
        .into_iter()
        .filter(|l| l.contains(&tag))
        .collect()
}

/// The `dropped N datagrams: A reason, B reason` line of a peer's exit
/// log: N and the count of each reason (0 and none if it logged no such
/// line, having dropped nothing). Reasons that do not add up to N fail.
pub fn dropped_summary(p: &mut Peer) -> (u64, HashMap<String, u64>) {
    let mut by_reason = HashMap::new();
    let lines = p.stderr_lines();
    let Some(line) = lines
        .iter()
        .find(|l| l.contains(" dropped ") && l.contains(" datagrams: "))
    else {
        return (0, by_reason);
    };
    let rest = &line[line.find(" dropped ").unwrap() + " dropped ".len()..];
    let (total, reasons) = rest.split_once(" datagrams: ").unwrap();
    let total: u64 = total
        .parse()
        .unwrap_or_else(|_| panic!("{}: bad count in {line:?}", p.label));
    for part in reasons.split(", ") {
        let (n, reason) = part
            .split_once(' ')
            .unwrap_or_else(|| panic!("{}: bad reason {part:?} in {line:?}", p.label));
        let n: u64 = n
            .parse()
            .unwrap_or_else(|_| panic!("{}: bad count {part:?} in {line:?}", p.label));
        by_reason.insert(reason.to_string(), n);
    }
    assert_eq!(
        by_reason.values().sum::<u64>(),
        total,
        "{}: the reasons do not add up to the total in {line:?}",
        p.label
    );
    (total, by_reason)
}

/// A rollcall that runs a command (`-- COMMAND`), started in a process
/// group of its own, which the command shares: dropping it kills the whole
/// group, so that no command outlives its test, even one whose rollcall
/// was killed.
pub struct Group(pub Peer);

impl std::ops::Deref for Group {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl std::ops::DerefMut for Group {
    fn deref_mut(&mut self) -> &mut Peer {
        &mut self.0
    }
}

impl Group {
    /// Starts rollcall with `args` as the leader of a new process group.
    /// Every descriptor this test process holds is marked close-on-exec
    /// first, so that rollcall starts with 0, 1 and 2 only, whatever the
    /// test runner leaked to us: what its command inherits is then
    /// rollcall's doing.
    pub fn spawn<S: AsRef<OsStr>>(label: &str, args: &[S]) -> Group {
        use std::os::unix::process::CommandExt;
        Group::spawn_configured(label, args, |cmd| {
            cmd.stdin(Stdio::null()).process_group(0);
        })
    }

    /// Like [`Group::spawn`], with rollcall started as `nohup` or a
    /// script's `&` would start it ([`with_signals`]).
    pub fn spawn_with_signals<S: AsRef<OsStr>>(
        label: &str,
        args: &[S],
        ignored: &'static [libc::c_int],
        blocked: &'static [libc::c_int],
    ) -> Group {
        Group::spawn_configured(label, args, |cmd| {
            use std::os::unix::process::CommandExt;
            cmd.stdin(Stdio::null()).process_group(0);
            with_signals(cmd, ignored, blocked);
        })
    }

    /// Starts rollcall with `args` as the leader of a new session whose
    /// controlling terminal is `tty`, also its stdin: the terminal's
    /// foreground process group is rollcall's, which its command shares,
    /// as in an interactive shell. A ^C written to the terminal's other
    /// side signals both.
    pub fn spawn_on_terminal<S: AsRef<OsStr>>(label: &str, args: &[S], tty: &fs::File) -> Group {
        use std::os::unix::process::CommandExt;
        let stdin = tty.try_clone().expect("the terminal");
        Group::spawn_configured(label, args, move |cmd| {
            cmd.stdin(stdin);
            // SAFETY: setsid and ioctl are async-signal-safe; nothing is
            // allocated between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    fn spawn_configured<S: AsRef<OsStr>>(
        label: &str,
        args: &[S],
        configure: impl FnOnce(&mut Command),
    ) -> Group {
        close_on_exec_above_stderr();
        let mut cmd = Command::new(BIN);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        configure(&mut cmd);
        for v in ENV_VARS.iter().chain(&["ROLLCALL_EXIT_ON_DOWN"]) {
            cmd.env_remove(v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN} for {label}: {e}"));
        let (tx, rx) = channel();
        forward(child.stdout.take().unwrap(), Stream::Stdout, tx.clone());
        forward(child.stderr.take().unwrap(), Stream::Stderr, tx);
        Group(Peer {
            label: label.to_string(),
            child,
            rx,
            stdout: Vec::new(),
            stderr: Vec::new(),
            open: 2,
            status: None,
        })
    }

    /// Sends `signal` to rollcall and its command at once.
    pub fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: kill(2) touches no memory; the group is this test's.
        let rc = unsafe { libc::kill(-(self.pid() as libc::pid_t), signal) };
        assert_eq!(rc, 0, "{}: kill -{signal} -{}", self.label, self.pid());
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The group outlives a rollcall that was reaped while its command
        // runs; ESRCH once all of it is gone.
        // SAFETY: as in `signal_group`.
        unsafe { libc::kill(-(self.pid() as libc::pid_t), libc::SIGKILL) };
    }
}

/// Marks every descriptor of this process above 2 close-on-exec.
pub fn close_on_exec_above_stderr() {
    let Ok(dir) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on a descriptor number touches no memory; one that
        // was closed meanwhile fails with EBADF, which is ignored.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// `cmd` starts with the signals `ignored` ignored and `blocked` blocked,
/// as under `nohup` or a script's `&`.
pub fn with_signals(
    cmd: &mut Command,
    ignored: &'static [libc::c_int],
    blocked: &'static [libc::c_int],
) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure calls only signal,
    // sigemptyset, sigaddset and pthread_sigmask, all async-signal-safe,
    // and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &s in ignored {
                libc::signal(s, libc::SIG_IGN);
            }
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            for &s in blocked {
                libc::sigaddset(set.as_mut_ptr(), s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
            Ok(())
        })
    };
}

/// Starts one peer per entry in `which`, each running `command` after
/// `--`, in process groups of their own.
pub fn start_job_peers(
    hosts: &Path,
    entries: &[String],
    which: std::ops::Range<usize>,
    timeout: &str,
    extra: &[&str],
    command: &[&str],
) -> Vec<Group> {
    which
        .map(|i| {
            let mut args = peer_args(hosts, &entries[i], timeout, extra);
            args.push("--".into());
            args.extend(command.iter().map(|w| w.to_string()));
            Group::spawn(&format!("peer{} ({})", i + 1, entries[i]), &args)
        })
        .collect()
}

/// A log line's level (`INFO`, `WARN`, ...) and message: the line is
/// `{RFC 3339 time} {LEVEL padded to 5} {message}`. None for a line of
/// another shape.
pub fn log_message(line: &str) -> Option<(&str, &str)> {
    let (_, rest) = line.split_once(' ')?;
    let level = rest.get(..5)?.trim_end();
    let message = rest.get(5..)?.strip_prefix(' ')?;
    Some((level, message))
}

/// How a peer's membership changes after READY, as the log reports them
/// (the README's contract; the entry is the peer's entry as written):
///
/// - `<entry> suspect: not heard for <d>, probing it directly and through other peers` (INFO)
/// - `<entry> down: silent for <d>` (WARN)
/// - `<entry> up: heard again` (INFO)
/// - `<entry> restarted (new incarnation): exchanging again` (INFO)
/// - `<entry> left` (INFO)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Suspect,
    Down,
    Up,
    Restarted,
    Left,
}

impl Change {
    pub const ALL: [Change; 5] = [
        Change::Suspect,
        Change::Down,
        Change::Up,
        Change::Restarted,
        Change::Left,
    ];

    /// The level the change is logged at.
    pub fn level(self) -> &'static str {
        match self {
            Change::Down => "WARN",
            _ => "INFO",
        }
    }

    /// Whether log message `message` reports this change of `entry`.
    pub fn is(self, entry: &str, message: &str) -> bool {
        let Some(rest) = message.strip_prefix(entry) else {
            return false;
        };
        match self {
            Change::Suspect => {
                rest.starts_with(" suspect: not heard for ")
                    && rest.ends_with(", probing it directly and through other peers")
            }
            Change::Down => rest.starts_with(" down: silent for "),
            Change::Up => rest == " up: heard again",
            Change::Restarted => rest == " restarted (new incarnation): exchanging again",
            Change::Left => rest == " left",
        }
    }

    /// A predicate on log lines: the line reports this change of `entry`.
    pub fn of(self, entry: &str) -> impl Fn(&str) -> bool + use<> {
        let entry = entry.to_string();
        move |l: &str| log_message(l).is_some_and(|(_, m)| self.is(&entry, m))
    }

    /// A predicate on log lines: the line reports this change of any of
    /// `entries`.
    pub fn of_any(self, entries: &[String]) -> impl Fn(&str) -> bool + use<> {
        let entries = entries.to_vec();
        move |l: &str| log_message(l).is_some_and(|(_, m)| entries.iter().any(|e| self.is(e, m)))
    }

    /// The silence a `suspect` or `down` line reports (`not heard for
    /// <d>`, `silent for <d>`).
    pub fn silence(line: &str) -> Option<Duration> {
        let (_, m) = log_message(line)?;
        let rest = m
            .split_once(" suspect: not heard for ")
            .or_else(|| m.split_once(" down: silent for "))?
            .1;
        let d = rest.split_once(", probing").map_or(rest, |(d, _)| d);
        humantime::parse_duration(d).ok()
    }
}

/// The position of the first of `lines` matching `pred`.
pub fn position(lines: &[String], pred: impl Fn(&str) -> bool) -> Option<usize> {
    lines.iter().position(|l| pred(l))
}

/// SIGCONT on drop: a stopped peer never outlives its test stopped.
pub struct Resume(pub u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.0.to_string())
            .status();
    }
}
