//! A new user's first hour, on real processes: signals that end the
//! process, a progress report on request, a ready file that cannot be
//! made, a byte-order mark, one peer written two ways, durations out of
//! range, and a closed stdout.

mod common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::*;

/// Every signal whose default action ends the process is caught: the
/// ready file goes, and the exit status is 128 + the signal, as shells
/// report it.
#[test]
fn every_terminating_signal_removes_the_ready_file() {
    const BLOCK: u16 = 50;
    let dir = TestDir::new("hardening_signals");
    // Linux's numbers; SIGRTMIN is 34 with glibc.
    let cases = [
        ("HUP", 129),
        ("QUIT", 131),
        ("USR2", 140),
        ("ALRM", 142),
        ("XCPU", 152),
        ("VTALRM", 154),
        ("PROF", 155),
        ("IO", 157),
        ("PWR", 158),
        ("RTMIN", 162),
    ];
    for (i, (sig, code)) in (1..).zip(cases) {
        // A list of one: READY at once.
        let e = vec![format!("127.0.0.1:{}", port(BLOCK, i))];
        let hosts = dir.hosts(&format!("hosts-{sig}"), &e);
        let rf = dir.file(&format!("ready-{sig}"));
        let rfs = rf.display().to_string();
        let args = peer_args(&hosts, &e[0], "60s", &["--ready-file", &rfs]);
        let mut p = Peer::spawn(&format!("SIG{sig}"), &args);
        p.expect_ready(deadline(WAIT));
        assert!(
            rf.exists(),
            "SIG{sig}: no ready file at READY\n{}",
            p.describe()
        );
        p.signal(sig);
        p.expect_exit(code, deadline(WAIT));
        assert!(
            !rf.exists(),
            "SIG{sig}: the ready file outlived the process\n{}",
            p.describe()
        );
    }
}

/// SIGUSR1 asks who is missing, in the words of the timeout report, and
/// ends nothing.
#[test]
fn sigusr1_reports_progress_and_ends_nothing() {
    const BLOCK: u16 = 51;
    let dir = TestDir::new("hardening_usr1");
    let e = entries(BLOCK, 2);
    let hosts = dir.hosts("hosts", &e);
    let mut p = start_peers(&hosts, &e, 0..1, "60s", &[]).remove(0);
    p.expect_started(deadline(WAIT));
    p.signal("USR1");
    p.expect_line(
        Stream::Stderr,
        "the progress report",
        |l| l.contains("waiting for READY after") && l.contains("1 of 2 peers missing"),
        deadline(WAIT),
    );
    let missing = format!("missing {}: no heartbeat received", e[1]);
    p.expect_line(
        Stream::Stderr,
        "the missing peer",
        |l| l.contains(&missing),
        deadline(WAIT),
    );
    assert!(p.is_running(), "SIGUSR1 ended it\n{}", p.describe());
    p.signal("TERM");
    p.expect_exit(143, deadline(WAIT));
}

/// A ready file that cannot be created is found at start, not at READY.
#[test]
fn a_ready_file_that_cannot_be_made_is_refused_at_start() {
    const BLOCK: u16 = 52;
    let dir = TestDir::new("hardening_ready_file");
    let e = entries(BLOCK, 1);
    let hosts = dir.hosts("hosts", &e);
    let missing_dir = dir.file("no-such-dir").join("ready");
    let mut paths = vec![missing_dir.display().to_string()];
    // /sys refuses new files even to root, as a read-only root would.
    if std::fs::File::create("/sys/rollcall-probe").is_err() {
        paths.push("/sys/rollcall-ready".into());
    }
    for path in paths {
        let args = peer_args(&hosts, &e[0], "5s", &["--ready-file", &path]);
        let (st, mut p) = run(&path, &args, Spawn::default());
        expect_usage_error(&mut p, st, &["cannot create the ready file", &path]);
    }
}

#[test]
fn a_hosts_file_with_a_byte_order_mark_works() {
    const BLOCK: u16 = 53;
    let dir = TestDir::new("hardening_bom");
    let e = entries(BLOCK, 2);
    let hosts = dir.write("hosts", &format!("\u{feff}{}\n{}\n", e[0], e[1]));
    let mut peers = start_peers(&hosts, &e, 0..2, "20s", &[]);
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_ready(until);
    }
}

/// `localhost:P` and `127.0.0.1:P` are one process: it says so, naming
/// both entries and their lines, and exits 2.
#[test]
fn one_peer_written_two_ways_is_named_and_exits_2() {
    const BLOCK: u16 = 54;
    let dir = TestDir::new("hardening_twice");
    let (p1, p2) = (port(BLOCK, 1), port(BLOCK, 2));
    let hosts = dir.write(
        "hosts",
        &format!("localhost:{p1}\n# the same again\n127.0.0.1:{p1}\n127.0.0.1:{p2}\n"),
    );
    let args = peer_args(&hosts, &format!("localhost:{p1}"), "20s", &[]);
    let mut p = Peer::spawn("listed twice", &args);
    p.expect_line(
        Stream::Stderr,
        "both entries named",
        |l| {
            l.contains(&format!(
                "localhost:{p1} (line 1) and 127.0.0.1:{p1} (line 3) are the same peer"
            ))
        },
        deadline(WAIT),
    );
    p.expect_exit(2, deadline(WAIT));
}

/// Durations that once panicked, or spun a core, are refused with one line
/// naming the flag.
#[test]
fn out_of_range_durations_are_refused_without_a_panic() {
    let dir = TestDir::new("hardening_durations");
    let hosts = dir.write("hosts", "127.0.0.1:7610\n");
    let h = hosts.display().to_string();
    let cases: [(&str, &str, &str); 6] = [
        ("-t", "300000000000y", "--timeout"),
        ("-t", "18446744073709551615s", "--timeout"),
        ("-t", "-1s", "cannot be negative"),
        ("-i", "400000000000y", "--interval"),
        ("-i", "1ns", "at least 10ms"),
        ("-i", "1us", "at least 10ms"),
    ];
    for (flag, value, needle) in cases {
        let args = ["-h", h.as_str(), "-n", "127.0.0.1:7610", flag, value];
        let (st, mut p) = run(&format!("{flag} {value}"), &args, Spawn::default());
        expect_usage_error(&mut p, st, &[needle]);
    }
}

/// READY and the log written into pipes nobody reads any more (as after
/// `rollcall ... 2>&1 | grep -m1 -q READY`) must not end the peer: its
/// partners may still need its acknowledgements. It runs to its timeout
/// and exits 0.
#[test]
fn closed_stdout_and_stderr_never_abort_the_peer() {
    const BLOCK: u16 = 55;
    let dir = TestDir::new("hardening_closed");
    let e = entries(BLOCK, 1);
    let hosts = dir.hosts("hosts", &e);
    let (out_reader, out_writer) = std::io::pipe().expect("a pipe");
    let (err_reader, err_writer) = std::io::pipe().expect("a pipe");
    drop(out_reader);
    drop(err_reader);
    let mut child = Command::new(BIN)
        .args(peer_args(&hosts, &e[0], "1s", &[]))
        .stdin(Stdio::null())
        .stdout(out_writer)
        .stderr(err_writer)
        .spawn()
        .expect("spawn rollcall");
    let until = deadline(WAIT);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {WAIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", describe_status(status));
}
