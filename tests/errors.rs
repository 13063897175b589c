//! Usage and configuration errors: exit code 2 with one `rollcall: ...`
//! line on stderr; `--help` and `--version` exit 0.

mod common;

use common::*;
use std::net::UdpSocket;

/// Args for a peer that must fail before doing anything; the short timeout
/// keeps a misbehaving binary from running long (the wait is bounded anyway).
fn args(hosts: &str, name: &str) -> Vec<String> {
    vec![
        "--hosts".into(),
        hosts.into(),
        "--name".into(),
        name.into(),
        "--interval".into(),
        INTERVAL.into(),
        "--timeout".into(),
        "3s".into(),
    ]
}

#[test]
fn bad_hosts_line_names_file_and_line() {
    const BLOCK: u16 = 20;
    let dir = TestDir::new("bad_hosts_line");
    let e = entries(BLOCK, 2);
    // Line 4 is bad; lines 2 and 3 (comment, blank) must still be counted.
    dir.write(
        "bad-hosts.txt",
        &format!("{}\n# a comment\n\n127.0.0.1:notaport\n{}\n", e[0], e[1]),
    );
    // A relative path: the message must name FILE as given on the command line.
    let (st, mut p) = run(
        "bad line",
        &args("bad-hosts.txt", &e[0]),
        Spawn {
            cwd: Some(&dir.path),
            ..Spawn::default()
        },
    );
    expect_usage_error(&mut p, st, &["rollcall: bad-hosts.txt:4:"]);
    // Bytes that are not UTF-8 are named by their line too.
    let mut bytes = format!("{}\n# ok\n", e[0]).into_bytes();
    bytes.extend_from_slice(b"127.0.0.\xff:7002\n");
    std::fs::write(dir.file("latin1.txt"), bytes).unwrap();
    let (st, mut p) = run(
        "not UTF-8",
        &args("latin1.txt", &e[0]),
        Spawn {
            cwd: Some(&dir.path),
            ..Spawn::default()
        },
    );
    expect_usage_error(&mut p, st, &["rollcall: latin1.txt:3: not UTF-8 text"]);
}

#[test]
fn unreadable_hosts_file_names_file() {
    const BLOCK: u16 = 21;
    let dir = TestDir::new("unreadable_hosts");
    let missing = dir.file("no-such-hosts-file");
    let e = entries(BLOCK, 1);
    let missing = missing.display().to_string();
    let (st, mut p) = run("missing file", &args(&missing, &e[0]), Spawn::default());
    expect_usage_error(&mut p, st, &[&missing]);

    // A directory is not a readable hosts file either.
    let d = dir.path.display().to_string();
    let (st, mut p) = run("directory", &args(&d, &e[0]), Spawn::default());
    expect_usage_error(&mut p, st, &[&d]);
}

#[test]
fn duplicate_entry() {
    const BLOCK: u16 = 22;
    let dir = TestDir::new("duplicate_entry");
    let e = entries(BLOCK, 2);
    let hosts = dir.write("hosts", &format!("{}\n{}\n{}\n", e[0], e[1], e[0]));
    let h = hosts.display().to_string();
    let (st, mut p) = run("duplicate", &args(&h, &e[1]), Spawn::default());
    expect_usage_error(&mut p, st, &[&format!("{h}:3: duplicate")]);
}

#[test]
fn name_matching_no_entry() {
    const BLOCK: u16 = 23;
    let dir = TestDir::new("no_entry");
    let e = entries(BLOCK, 3);
    let hosts = dir.hosts("hosts", &e[..2]);
    let h = hosts.display().to_string();
    // e[2] is a valid-looking name that is not in the file.
    let (st, mut p) = run("no entry", &args(&h, &e[2]), Spawn::default());
    expect_usage_error(&mut p, st, &["no entry"]);
}

#[test]
fn name_matching_several_entries() {
    const BLOCK: u16 = 25;
    let dir = TestDir::new("several_entries");
    let e = entries(BLOCK, 2);
    let hosts = dir.hosts("hosts", &e);
    let h = hosts.display().to_string();
    // HOST `127.0.0.1` matches both entries.
    let (st, mut p) = run("several", &args(&h, "127.0.0.1"), Spawn::default());
    expect_usage_error(&mut p, st, &["several entries"]);
}

#[test]
fn port_in_use() {
    const BLOCK: u16 = 24;
    let dir = TestDir::new("port_in_use");
    let e = entries(BLOCK, 2);
    let hosts = dir.hosts("hosts", &e);
    let h = hosts.display().to_string();
    let p1 = port(BLOCK, 1);
    // A dual-stack [::] socket blocks both IPv4 and IPv6 binds of the port;
    // fall back to IPv4 where IPv6 is unavailable.
    let _held = UdpSocket::bind(("::", p1))
        .or_else(|_| UdpSocket::bind(("0.0.0.0", p1)))
        .expect("bind the port first");
    let (st, mut p) = run("port in use", &args(&h, &e[0]), Spawn::default());
    expect_usage_error(&mut p, st, &["in use"]);
}

#[test]
fn unknown_flag_names_flag() {
    let (st, mut p) = run("unknown flag", &["--frobnicate"], Spawn::default());
    expect_usage_error(&mut p, st, &["--frobnicate"]);
}

#[test]
fn bad_duration_names_flag() {
    const BLOCK: u16 = 26;
    let dir = TestDir::new("bad_duration");
    let e = entries(BLOCK, 2);
    let hosts = dir.hosts("hosts", &e);
    let h = hosts.display().to_string();
    for flag in ["--timeout", "--interval"] {
        let mut a = args(&h, &e[0]);
        a.push(flag.into());
        a.push("5parsecs".into());
        let (st, mut p) = run(flag, &a, Spawn::default());
        expect_usage_error(&mut p, st, &[flag]);
    }
}

#[test]
fn bare_dash_h_mentions_help() {
    let (st, mut p) = run("bare -h", &["-h"], Spawn::default());
    expect_usage_error(&mut p, st, &["--help"]);
}

/// True if `text` contains the short option `-c` as a token of its own
/// (not as part of `--long` or a word).
fn has_short_flag(text: &str, c: char) -> bool {
    let pat = format!("-{c}");
    text.match_indices(&pat).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + pat.len()..].chars().next();
        !matches!(before, Some(b) if b == '-' || b.is_alphanumeric())
            && !matches!(after, Some(a) if a.is_alphanumeric() || a == '-')
    })
}

#[test]
fn help_lists_every_flag_and_exit_codes() {
    let (st, mut p) = run("--help", &["--help"], Spawn::default());
    let desc = p.describe();
    assert_eq!(
        st.code(),
        Some(0),
        "--help: {}\n{desc}",
        describe_status(st)
    );
    let out = p.stdout_text();
    for flag in [
        "--hosts",
        "--name",
        "--port",
        "--timeout",
        "--interval",
        "--barrier",
        "--ready-file",
        "--ready-to",
        "--bind",
        "--debug",
        "--quiet",
        "--help",
        "--version",
    ] {
        assert!(out.contains(flag), "--help output lacks {flag}\n{desc}");
    }
    for c in ['h', 'n', 'p', 't', 'i', 'd', 'q', 'V'] {
        assert!(has_short_flag(&out, c), "--help output lacks -{c}\n{desc}");
    }
    for code in ["124", "130", "143"] {
        assert!(
            out.contains(code),
            "--help output lacks exit code {code}\n{desc}"
        );
    }
}

#[test]
fn version_exits_zero() {
    for flag in ["--version", "-V"] {
        let (st, mut p) = run(flag, &[flag], Spawn::default());
        let desc = p.describe();
        assert_eq!(
            st.code(),
            Some(0),
            "{flag}: {}\n{desc}",
            describe_status(st)
        );
        let out = p.stdout_text();
        assert!(
            out.contains(env!("CARGO_PKG_VERSION")),
            "{flag} output lacks version {}\n{desc}",
            env!("CARGO_PKG_VERSION")
        );
        // Which commit and which build: what a bug report needs.
        let head = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let commit = head.unwrap_or_else(|| "unknown".into());
        assert!(
            out.contains(&format!("commit {commit}")) && out.contains(" build for "),
            "{flag} output lacks the commit {commit} and the build\n{desc}"
        );
    }
}
