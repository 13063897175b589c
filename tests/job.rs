//! `rollcall -- COMMAND`: the command run after READY, on real processes.
//!
//! The oracles come from the contract in `--help` and the README: the
//! command starts after READY (with `--barrier`, once every peer is READY),
//! learns its place from four variables, gets the signals that would stop
//! rollcall, outlives the timeout, and its status is rollcall's (128 + n
//! for signal n, 127 not found, 126 not executable, 3 when a peer went
//! down under `--exit-on-down`). Every rollcall runs in a process group of
//! its own with its command ([`Group`]), killed whole at the end.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::*;

/// A shell loop that says `started`, then waits to be signalled: a trapped
/// signal interrupts `wait` at once, whatever the shell.
fn waiting(traps: &str) -> String {
    format!("{traps} echo started; while :; do sleep 0.05 & wait $!; done")
}

/// A cluster of one: READY at once, so the command starts at once.
fn alone(dir: &TestDir, block: u16, i: u16, extra: &[&str], command: &[&str]) -> Group {
    let e = vec![format!("127.0.0.1:{}", port(block, i))];
    let hosts = dir.hosts(&format!("hosts-{i}"), &e);
    start_job_peers(&hosts, &e, 0..1, "20s", extra, command).remove(0)
}

/// A new pseudo-terminal: its master side, and its terminal side opened
/// as a file (not yet anyone's controlling terminal).
fn pseudo_terminal() -> (File, File) {
    // SAFETY: plain libc calls on a descriptor this function owns; the
    // name ptsname returns is copied before any other call.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        let master = File::from_raw_fd(master);
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0, "unlockpt");
        let name = libc::ptsname(master.as_raw_fd());
        assert!(!name.is_null(), "ptsname");
        let name = std::ffi::CStr::from_ptr(name).to_str().unwrap().to_owned();
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        (master, tty)
    }
}

/// The one log line saying the command could not run.
fn cannot_run_line(p: &mut Peer) -> String {
    let lines: Vec<String> = p
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("cannot run"))
        .collect();
    assert_eq!(lines.len(), 1, "{}: one line\n{}", p.label, p.describe());
    lines[0].clone()
}

#[test]
fn the_command_runs_after_ready_and_knows_its_place() {
    let dir = TestDir::new("job_env");
    let e = entries(42, 3);
    let hosts = dir.hosts("hosts", &e);
    let command = [
        "sh",
        "-c",
        r#"echo "$ROLLCALL_INDEX $ROLLCALL_SIZE $ROLLCALL_NAME $ROLLCALL_PEERS""#,
    ];
    let mut peers = start_job_peers(&hosts, &e, 0..3, "20s", &[], &command);
    let until = deadline(WAIT);
    for (i, p) in peers.iter_mut().enumerate() {
        // It exits with the command, which exits 0 at once.
        p.expect_exit(0, until);
        // Its position among the entries (the file starts with a comment
        // and a blank line), the count, the entry as written, all of them
        // in file order; and READY first.
        let want = [
            "READY".to_string(),
            format!("{} 3 {} {}", i + 1, e[i], e.join(",")),
        ];
        assert_eq!(p.stdout_lines(), want, "{}", p.describe());
        assert!(
            p.stderr_text().contains("started sh -c "),
            "{}",
            p.describe()
        );
    }
}

/// Five peers whose command exits at once: each leaves the cluster as
/// soon as it is READY, maybe before another has heard its
/// acknowledgement. A peer that left once READY still counts, so every
/// one of them becomes READY, runs the command and exits 0; none waits
/// for its timeout (124).
#[test]
fn a_command_that_exits_at_once_strands_no_other_peer() {
    let dir = TestDir::new("job_fast");
    let e = entries(37, 5);
    let hosts = dir.hosts("hosts", &e);
    let mut peers = start_job_peers(&hosts, &e, 0..5, "10s", &[], &["true"]);
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_exit(0, until);
        assert_eq!(p.stdout_lines(), ["READY"], "{}", p.describe());
    }
}

#[test]
fn the_command_status_is_rollcall_s() {
    let dir = TestDir::new("job_status");
    let cases: [(&str, i32, &str); 3] = [
        ("exit 7", 7, "the command exited with status 7"),
        ("kill -KILL $$", 137, "the command was ended by"),
        ("kill -SEGV $$", 139, "the command was ended by"),
    ];
    let mut peers: Vec<Group> = cases
        .iter()
        .zip(1..)
        .map(|((script, _, _), i)| alone(&dir, 43, i, &[], &["sh", "-c", script]))
        .collect();
    let until = deadline(WAIT);
    for (p, (script, code, why)) in peers.iter_mut().zip(cases) {
        p.expect_exit(code, until);
        assert_eq!(p.stdout_lines(), ["READY"], "{script}\n{}", p.describe());
        let exiting = format!("exiting ({code}): {why}");
        assert!(p.stderr_text().contains(&exiting), "{}", p.describe());
    }
}

#[test]
fn a_command_that_cannot_run_exits_127_or_126() {
    let dir = TestDir::new("job_cannot_run");
    let missing = dir.file("no-such-program").display().to_string();
    let plain = dir.write("not-executable", "#!/bin/sh\necho ran\n");
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let plain = plain.display().to_string();
    let cases: [(&str, i32, &str); 3] = [
        (&missing, 127, "not found"),
        ("rollcall-no-such-command-anywhere", 127, "not found"),
        (&plain, 126, "permission denied"),
    ];
    let mut peers: Vec<Group> = cases
        .iter()
        .zip(1..)
        .map(|((program, _, _), i)| alone(&dir, 44, i, &[], &[program, "arg"]))
        .collect();
    let until = deadline(WAIT);
    for (p, (program, code, reason)) in peers.iter_mut().zip(cases) {
        p.expect_exit(code, until);
        let line = cannot_run_line(p);
        let want = format!("ERROR cannot run '{program}': {reason}");
        assert!(line.ends_with(&want), "{want}\n{}", p.describe());
        // READY was said; nothing ran.
        assert_eq!(p.stdout_lines(), ["READY"], "{}", p.describe());
    }
}

#[test]
fn stop_signals_are_passed_on_to_the_command() {
    let dir = TestDir::new("job_signals");
    // SIGTERM, twice: each is passed on, and the command decides.
    let term =
        waiting(r#"n=0; trap 'n=$((n+1)); echo "got-term $n"; [ $n = 2 ] && exit 42' TERM;"#);
    let int = waiting(r#"trap 'echo got-int; exit 43' INT;"#);
    let mut t = alone(&dir, 45, 1, &[], &["sh", "-c", &term]);
    let mut i = alone(&dir, 45, 2, &[], &["sh", "-c", &int]);
    let until = deadline(WAIT);
    for p in [&mut t, &mut i] {
        p.expect_line(Stream::Stdout, "started", |l| l == "started", until);
    }
    t.signal("TERM");
    t.expect_line(Stream::Stdout, "got-term 1", |l| l == "got-term 1", until);
    assert!(t.is_running(), "exited on the first\n{}", t.describe());
    t.signal("TERM");
    i.signal("INT");
    t.expect_exit(42, until);
    i.expect_exit(43, until);
    assert_eq!(
        t.stdout_lines(),
        ["READY", "started", "got-term 1", "got-term 2"],
        "{}",
        t.describe()
    );
    assert_eq!(
        i.stdout_lines(),
        ["READY", "started", "got-int"],
        "{}",
        i.describe()
    );
    assert!(
        t.stderr_text()
            .contains("sent SIGTERM to the command (pid ")
    );
    assert!(i.stderr_text().contains("sent SIGINT to the command (pid "));
}

/// The command starts with no signal blocked and with the default action
/// for those rollcall passes on, SIGCHLD and SIGPIPE, though rollcall
/// itself was started with them ignored (as `nohup` and a script's `&`
/// start a program) and others blocked: else a SIGTERM passed on would
/// never end it. And its status still reaches rollcall, which an ignored
/// SIGCHLD would have the kernel discard.
#[test]
fn the_command_starts_with_no_signal_blocked_and_ours_not_ignored() {
    const IGNORED: &[libc::c_int] = &[
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGCHLD,
        libc::SIGPIPE,
    ];
    const BLOCKED: &[libc::c_int] = &[libc::SIGUSR1, libc::SIGUSR2, libc::SIGALRM];
    let bit = |s: libc::c_int| 1u64 << (s - 1);
    let bits = |signals: &[libc::c_int]| signals.iter().fold(0, |m, &s| m | bit(s));
    let dir = TestDir::new("job_mask");
    // grep itself reports the masks it started with, as a shell might
    // reset what it inherited; it exits 2 for the file that does not
    // exist, a status that must reach rollcall.
    let absent = dir.file("absent").display().to_string();
    let grep = [
        "grep",
        "-hE",
        "^Sig(Blk|Ign):",
        "/proc/self/status",
        &absent,
    ];
    // The kernel's masks, in hexadecimal, bit n - 1 for signal n.
    let masks = |lines: &[String]| {
        let mask = |name: &str| {
            let line = lines
                .iter()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} line in {lines:?}"));
            u64::from_str_radix(line.trim(), 16).expect("a hexadecimal mask")
        };
        (mask("SigBlk:"), mask("SigIgn:"))
    };

    // The premise: what is started so has them ignored and blocked.
    let mut cmd = std::process::Command::new(grep[0]);
    cmd.args(&grep[1..]);
    with_signals(&mut cmd, IGNORED, BLOCKED);
    let out = cmd.output().expect("run grep");
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    let (blocked, ignored) = masks(&lines);
    assert_eq!(blocked & bits(BLOCKED), bits(BLOCKED), "{lines:?}");
    assert_eq!(ignored & bits(IGNORED), bits(IGNORED), "{lines:?}");

    let e = vec![format!("127.0.0.1:{}", port(96, 1))];
    let hosts = dir.hosts("hosts", &e);
    let mut args = peer_args(&hosts, &e[0], "20s", &[]);
    args.push("--".into());
    args.extend(grep.map(String::from));
    let mut p = Group::spawn_with_signals("peer1", &args, IGNORED, BLOCKED);
    p.expect_exit(2, deadline(WAIT));
    let (blocked, ignored) = masks(&p.stdout_lines());
    assert_eq!(blocked, 0, "{}", p.describe());
    for &s in IGNORED {
        assert_eq!(ignored & bit(s), 0, "signal {s} ignored\n{}", p.describe());
    }
}

/// Ctrl-C in a terminal: the terminal signals its foreground process
/// group, rollcall and its command alike. rollcall does not pass that
/// SIGINT on again (the command would count two); a `kill -INT` to
/// rollcall alone is passed on, once.
#[test]
fn ctrl_c_in_a_terminal_reaches_the_command_once() {
    let dir = TestDir::new("job_terminal");
    let e = vec![format!("127.0.0.1:{}", port(38, 1))];
    let hosts = dir.hosts("hosts", &e);
    let script = waiting(r#"n=0; trap 'n=$((n+1)); echo "got-int $n"' INT;"#);
    let mut args = peer_args(&hosts, &e[0], "20s", &[]);
    args.extend(["--".into(), "sh".into(), "-c".into(), script]);
    let (mut master, tty) = pseudo_terminal();
    let mut p = Group::spawn_on_terminal("peer1 (on a terminal)", &args, &tty);
    drop(tty);
    let until = deadline(WAIT);
    p.expect_line(Stream::Stdout, "started", |l| l == "started", until);
    // ^C, as typed.
    master.write_all(b"\x03").expect("write ^C");
    p.expect_line(Stream::Stdout, "got-int 1", |l| l == "got-int 1", until);
    let not_again = |l: &str| l.contains("SIGINT came from the terminal to the command as well");
    p.expect_line(Stream::Stderr, "not passed on", not_again, until);
    // From a process, to rollcall alone: passed on.
    p.signal("INT");
    p.expect_line(Stream::Stdout, "got-int 2", |l| l == "got-int 2", until);
    p.signal("TERM");
    p.expect_exit(143, until);
    assert_eq!(
        p.stdout_lines(),
        ["READY", "started", "got-int 1", "got-int 2"],
        "{}",
        p.describe()
    );
}

#[test]
fn the_timeout_does_not_end_a_running_command() {
    let dir = TestDir::new("job_timeout");
    let script = "sleep 2; echo still-here; sleep 1; echo done";
    let mut p = alone(&dir, 46, 1, &["--timeout", "1s"], &["sh", "-c", script]);
    let until = deadline(WAIT);
    p.expect_line(Stream::Stdout, "still-here", |l| l == "still-here", until);
    // A second past its timeout, rollcall still serves the command.
    assert!(p.is_running(), "ended at its timeout\n{}", p.describe());
    p.expect_exit(0, until);
    assert_eq!(p.stdout_lines(), ["READY", "still-here", "done"]);
    let exiting = "exiting (0): the command exited with status 0";
    assert!(p.stderr_text().contains(exiting), "{}", p.describe());
}

/// With `--barrier` a peer that is READY still waits for every other
/// peer's READY before it runs the command. Peer 2 is stopped (SIGSTOP)
/// after it exchanged with peer 1 and before peer 3 starts: peer 1 then
/// becomes READY (it heard peer 2 within the silence threshold), peer 3
/// cannot (it never exchanged with peer 2), and peer 1's command must
/// wait; once peer 2 continues, all three run it.
#[test]
fn with_the_barrier_the_command_waits_for_every_peer() {
    let dir = TestDir::new("job_barrier");
    let e = entries(47, 3);
    let hosts = dir.hosts("hosts", &e);
    // Silent after 2.5 intervals: 2.5 s, longer than peer 2's pause.
    let extra = ["--barrier", "--interval", "1s"];
    let command = ["sh", "-c", r#"echo "run $ROLLCALL_INDEX""#];
    let mut peers = start_job_peers(&hosts, &e, 0..2, "30s", &extra, &command);
    let until = deadline(WAIT);
    for (p, other) in peers.iter_mut().zip([&e[1], &e[0]]) {
        let exchanged = format!("exchanged with {other} ");
        p.expect_line(
            Stream::Stderr,
            "exchanged",
            |l| l.contains(&exchanged),
            until,
        );
    }
    peers[1].signal("STOP");
    peers.extend(start_job_peers(&hosts, &e, 2..3, "30s", &extra, &command));
    peers[0].expect_ready(until);
    let stopped_at = Instant::now();
    // Peer 1 is READY, peer 3 is not: nobody runs the command. (Without
    // the barrier, peer 1's would print at once.)
    let run = |l: &str| l.starts_with("run ");
    let early = deadline(Duration::from_secs(1));
    for p in [0, 2] {
        if let Some(l) = peers[p].wait_for_line(Stream::Stdout, run, early) {
            panic!("{l:?} before every peer was READY\n{}", peers[p].describe());
        }
    }
    assert!(
        stopped_at.elapsed() < Duration::from_secs(2),
        "peer 2 stopped too long for this test to mean anything"
    );
    peers[1].signal("CONT");
    let until = deadline(WAIT);
    for (i, p) in peers.iter_mut().enumerate() {
        p.expect_exit(0, until);
        let want = ["READY".to_string(), format!("run {}", i + 1)];
        assert_eq!(p.stdout_lines(), want, "{}", p.describe());
    }
}

/// Under `--exit-on-down`, peers whose command runs stop it (SIGTERM) when
/// a peer is killed, and exit 3; without it, the commands run on.
#[test]
fn exit_on_down_stops_the_command_when_a_peer_dies() {
    let dir = TestDir::new("job_exit_on_down");
    let command = waiting(r#"trap 'echo got-term; exit 0' TERM;"#);
    let command = ["sh", "-c", command.as_str()];
    let all = entries(48, 6);
    let (on, off) = all.split_at(3);
    let on_hosts = dir.hosts("on", on);
    let off_hosts = dir.hosts("off", off);
    let fast = ["--interval", "100ms"];
    let flagged = ["--interval", "100ms", "--exit-on-down"];
    let mut on_peers = start_job_peers(&on_hosts, on, 0..3, "60s", &flagged, &command);
    let mut off_peers = start_job_peers(&off_hosts, off, 0..3, "60s", &fast, &command);
    let until = deadline(WAIT);
    for p in on_peers.iter_mut().chain(off_peers.iter_mut()) {
        p.expect_ready(until);
        p.expect_line(Stream::Stdout, "started", |l| l == "started", until);
    }
    // Peer 3 of each cluster dies with its command, as a crashed host.
    for peers in [&mut on_peers, &mut off_peers] {
        peers[2].signal_group(libc::SIGKILL);
        peers[2].wait_exit(until);
    }
    let within = deadline(Duration::from_secs(5));
    for p in on_peers[..2].iter_mut() {
        p.expect_line(Stream::Stdout, "got-term", |l| l == "got-term", within);
        p.expect_exit(3, within);
        let exiting = "exiting (3): a peer went down while the command ran";
        assert!(p.stderr_text().contains(exiting), "{}", p.describe());
    }
    // Without the flag the others report it down and carry on.
    let silent = format!("{} down: silent for", off[2]);
    for p in off_peers[..2].iter_mut() {
        p.expect_line(Stream::Stderr, "down", |l| l.contains(&silent), until);
    }
    let later = deadline(Duration::from_secs(1));
    for p in off_peers[..2].iter_mut() {
        let term = p.wait_for_line(Stream::Stdout, |l| l == "got-term", later);
        assert_eq!(term, None, "{}", p.describe());
        assert!(p.is_running(), "{}", p.describe());
    }
    // And stop when told to, with their command's status.
    for p in off_peers[..2].iter_mut() {
        p.signal("TERM");
    }
    let until = deadline(WAIT);
    for p in off_peers[..2].iter_mut() {
        p.expect_exit(0, until);
        assert_eq!(p.stdout_lines(), ["READY", "started", "got-term"]);
    }
}

/// The command gets stdin, stdout and stderr, and none of rollcall's own
/// descriptors: sockets, epoll, the signal pipe, the resolver's eventfd.
#[test]
fn the_command_inherits_no_descriptor_of_rollcall() {
    let dir = TestDir::new("job_fds");
    let script = "ls -l /proc/self/fd; echo listed; exec sleep 30";
    let mut p = alone(&dir, 49, 1, &[], &["sh", "-c", script]);
    let until = deadline(WAIT);
    p.expect_line(Stream::Stdout, "listed", |l| l == "listed", until);
    // rollcall does hold descriptors beyond 0, 1 and 2 meanwhile.
    let own = std::fs::read_dir(format!("/proc/{}/fd", p.pid()))
        .expect("rollcall's descriptors")
        .count();
    assert!(own > 3, "rollcall holds {own} descriptors");
    p.signal("TERM");
    p.expect_exit(143, until);
    let listing = p.stdout_lines();
    let fds: Vec<(&str, &str)> = listing
        .iter()
        .filter_map(|l| l.split_once(" -> "))
        .map(|(left, target)| (left.rsplit(' ').next().unwrap_or(""), target))
        .collect();
    let numbers: Vec<&str> = fds.iter().map(|(fd, _)| *fd).collect();
    assert!(
        numbers.starts_with(&["0", "1", "2"]),
        "{}",
        listing.join("\n")
    );
    for (fd, target) in &fds[3..] {
        // ls's own: the directory it lists.
        let listed = target.starts_with("/proc/") && target.ends_with("/fd");
        assert!(
            listed,
            "inherited fd {fd} -> {target}\n{}",
            listing.join("\n")
        );
    }
}

#[test]
fn exit_on_down_and_an_empty_command_are_usage_errors() {
    let cases: [(&[&str], &[&str]); 3] = [
        (&["-h", "hosts", "--exit-on-down"], &["--exit-on-down"]),
        (&["-h", "hosts", "--"], &["'--'"]),
        (&["-h", "hosts", "./job.sh"], &["'./job.sh'", "'--'"]),
    ];
    for (args, needles) in cases {
        let (st, mut p) = run("usage", args, Spawn::default());
        expect_usage_error(&mut p, st, needles);
    }
}
