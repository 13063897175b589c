//! Process lifecycle: signals, --ready-file, --ready-to, environment
//! variables.

mod common;

use common::*;

/// Two peers of `block`, both READY.
fn ready_pair(dir: &TestDir, block: u16, extra: [&[&str]; 2]) -> Vec<Peer> {
    let e = entries(block, 2);
    let hosts = dir.hosts("hosts", &e);
    let mut peers: Vec<Peer> = (0..2)
        .map(|i| start_peers(&hosts, &e, i..i + 1, "20s", extra[i]).remove(0))
        .collect();
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_ready(until);
    }
    peers
}

#[test]
fn sigterm_and_sigint_on_ready_peers() {
    let dir = TestDir::new("signals_ready");
    let mut peers = ready_pair(&dir, 30, [&[], &[]]);
    peers[0].signal("TERM");
    peers[0].expect_exit(143, deadline(WAIT));
    peers[1].signal("INT");
    peers[1].expect_exit(130, deadline(WAIT));
    for p in peers.iter_mut() {
        assert_eq!(p.stdout_lines(), vec!["READY"], "stdout\n{}", p.describe());
    }
}

/// One peer of a two-entry file (so it never gets READY), started and then
/// sent `sig`: it must exit with `code`.
fn signal_before_ready(test: &str, block: u16, sig: &str, code: i32) {
    let dir = TestDir::new(test);
    let e = entries(block, 2);
    let hosts = dir.hosts("hosts", &e);
    let mut p = start_peers(&hosts, &e, 0..1, "20s", &[]).remove(0);
    p.expect_started(deadline(WAIT));
    assert!(p.is_running(), "exited before the signal\n{}", p.describe());
    p.signal(sig);
    p.expect_exit(code, deadline(WAIT));
    assert!(p.stdout_lines().is_empty(), "stdout\n{}", p.describe());
}

#[test]
fn sigterm_before_ready() {
    signal_before_ready("sigterm_before_ready", 31, "TERM", 143);
}

#[test]
fn sigint_before_ready() {
    signal_before_ready("sigint_before_ready", 32, "INT", 130);
}

#[test]
fn ready_file_lifecycle() {
    const BLOCK: u16 = 33;
    let dir = TestDir::new("ready_file");
    let e = entries(BLOCK, 2);
    let hosts = dir.hosts("hosts", &e);
    let rf1 = dir.file("ready-1");
    let rf2 = dir.file("ready-2");
    let rf1s = rf1.display().to_string();
    let rf2s = rf2.display().to_string();
    // A file left by a killed run must not pass for READY.
    std::fs::write(&rf1, "READY\n").unwrap();
    let mut p1 = start_peers(&hosts, &e, 0..1, "20s", &["--ready-file", &rf1s]).remove(0);
    p1.expect_started(deadline(WAIT));
    assert!(
        !rf1.exists(),
        "ready file exists before READY\n{}",
        p1.describe()
    );
    assert_eq!(probe(&rf1s), 1, "probe before READY");

    // Peer 2 runs out a short timeout after READY: exit 0 removes its file too.
    let mut p2 = start_peers(&hosts, &e, 1..2, "5s", &["--ready-file", &rf2s]).remove(0);
    let until = deadline(WAIT);
    p1.expect_ready(until);
    assert!(
        rf1.exists(),
        "ready file absent after READY\n{}",
        p1.describe()
    );
    assert_eq!(probe(&rf1s), 0, "probe after READY");
    p2.expect_ready(until);
    assert!(
        rf2.exists(),
        "ready file absent after READY\n{}",
        p2.describe()
    );

    p1.signal("TERM");
    p1.expect_exit(143, deadline(WAIT));
    assert!(
        !rf1.exists(),
        "ready file left after SIGTERM exit\n{}",
        p1.describe()
    );
    assert_eq!(probe(&rf1s), 1, "probe after exit");

    p2.expect_exit(0, deadline(WAIT));
    assert!(
        !rf2.exists(),
        "ready file left after exit 0\n{}",
        p2.describe()
    );
}

#[test]
fn ready_to_stderr() {
    let dir = TestDir::new("ready_to_stderr");
    let e = entries(36, 2);
    let hosts = dir.hosts("hosts", &e);
    let mut p1 = start_peers(&hosts, &e, 0..1, "20s", &["--ready-to", "stderr"]).remove(0);
    let mut p2 = start_peers(&hosts, &e, 1..2, "20s", &[]).remove(0);
    let until = deadline(WAIT);
    p1.expect_line(Stream::Stderr, "READY", |l| l == "READY", until);
    p2.expect_ready(until);
    p1.signal("TERM");
    p1.expect_exit(143, deadline(WAIT));
    assert!(p1.stdout_lines().is_empty(), "stdout\n{}", p1.describe());
    let readies = p1.stderr_lines().iter().filter(|l| *l == "READY").count();
    assert_eq!(readies, 1, "READY lines on stderr\n{}", p1.describe());
}

#[test]
fn env_vars_replace_flags() {
    const BLOCK: u16 = 34;
    let dir = TestDir::new("env_vars");
    let e = entries(BLOCK, 2);
    let hosts = dir.hosts("hosts", &e);
    let h = hosts.display().to_string();
    // Peer 1 gets everything from the environment, including a short total
    // timeout: it must exit 0 after READY (the default would be 120 s).
    let env = [
        ("ROLLCALL_HOSTS", h.as_str()),
        ("ROLLCALL_NAME", e[0].as_str()),
        ("ROLLCALL_INTERVAL", INTERVAL),
        ("ROLLCALL_TIMEOUT", "4s"),
    ];
    let no_args: [&str; 0] = [];
    let mut p1 = Peer::spawn_with(
        "env peer",
        &no_args,
        Spawn {
            env: &env,
            ..Spawn::default()
        },
    );
    let mut p2 = start_peers(&hosts, &e, 1..2, "20s", &[]).remove(0);
    let until = deadline(WAIT);
    p1.expect_ready(until);
    p2.expect_ready(until);
    p1.expect_exit(0, deadline(WAIT));
    assert_eq!(
        p1.stdout_lines(),
        vec!["READY"],
        "stdout\n{}",
        p1.describe()
    );
}

#[test]
fn flags_win_over_env_vars() {
    const BLOCK: u16 = 35;
    let dir = TestDir::new("flags_win");
    let e = entries(BLOCK, 3);
    let hosts = dir.hosts("hosts", &e[..2]);
    let h = hosts.display().to_string();
    let nowhere = dir.file("no-such-hosts").display().to_string();

    // Wrong variables, right flags: works.
    let bad_env = [
        ("ROLLCALL_HOSTS", nowhere.as_str()),
        ("ROLLCALL_NAME", e[2].as_str()),
    ];
    let mut p1 = Peer::spawn_with(
        "flags over bad env",
        &peer_args(&hosts, &e[0], "20s", &[]),
        Spawn {
            env: &bad_env,
            ..Spawn::default()
        },
    );
    let mut p2 = start_peers(&hosts, &e, 1..2, "20s", &[]).remove(0);
    let until = deadline(WAIT);
    p1.expect_ready(until);
    p2.expect_ready(until);

    // Right variables, wrong flag: the flag is what counts.
    let good_env = [
        ("ROLLCALL_HOSTS", h.as_str()),
        ("ROLLCALL_NAME", e[0].as_str()),
    ];
    let (st, mut p) = run(
        "bad --name over good env",
        &["--name", e[2].as_str(), "--timeout", "3s"],
        Spawn {
            env: &good_env,
            ..Spawn::default()
        },
    );
    expect_usage_error(&mut p, st, &["no entry"]);
    let (st, mut p) = run(
        "bad --hosts over good env",
        &["--hosts", nowhere.as_str(), "--timeout", "3s"],
        Spawn {
            env: &good_env,
            ..Spawn::default()
        },
    );
    expect_usage_error(&mut p, st, &[&nowhere]);
}

/// `rollcall probe` on a ready file, through the environment as in an
/// image; its exit code.
fn probe(ready_file: &str) -> i32 {
    let env = [("ROLLCALL_READY_FILE", ready_file)];
    let (st, mut p) = run(
        "probe",
        &["probe"],
        Spawn {
            env: &env,
            cwd: None,
        },
    );
    let out = p.stdout_lines();
    assert_eq!(out.len(), 1, "probe prints one line\n{}", p.describe());
    st.code().expect("probe exits, not killed")
}

#[test]
fn probe_without_a_ready_file_is_a_usage_error() {
    let (st, mut p) = run(
        "probe",
        &["probe"],
        Spawn {
            env: &[],
            cwd: None,
        },
    );
    expect_usage_error(&mut p, st, &["ROLLCALL_READY_FILE"]);
}
