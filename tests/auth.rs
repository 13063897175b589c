//! --secret-file: authenticated datagrams between real processes.
//!
//! Port blocks 60-63 (see the table in tests/common/mod.rs).

mod common;

use common::*;

/// Two peers; each gets `--secret-file` with its own secret (None: no flag).
/// Returns them started.
fn pair(test: &str, block: u16, timeout: &str, secrets: [Option<&str>; 2]) -> (TestDir, Vec<Peer>) {
    let dir = TestDir::new(test);
    let e = entries(block, 2);
    let hosts = dir.hosts("hosts", &e);
    let mut peers = Vec::new();
    for (k, secret) in secrets.iter().enumerate() {
        let mut extra = Vec::new();
        let path;
        if let Some(secret) = secret {
            path = dir.file(&format!("secret-{k}"));
            std::fs::write(&path, secret).unwrap();
            extra = vec!["--secret-file".to_string(), path.display().to_string()];
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        peers.extend(start_peers(&hosts, &e, k..k + 1, timeout, &extra));
    }
    (dir, peers)
}

#[test]
fn peers_sharing_a_secret_become_ready() {
    // A trailing newline does not change the secret: `echo` and `printf`
    // make the same one.
    let (_dir, mut peers) = pair(
        "auth_shared",
        60,
        "20s",
        [Some("a long shared secret\n"), Some("a long shared secret")],
    );
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_ready(until);
        let start = p.expect_started(until);
        assert!(start.contains("authenticated"), "{start}");
    }
}

#[test]
fn peers_with_different_secrets_say_so_at_the_timeout() {
    let (_dir, mut peers) = pair(
        "auth_different",
        61,
        "2s",
        [
            Some("the first secret, long"),
            Some("the second secret, long"),
        ],
    );
    for p in peers.iter_mut() {
        p.expect_exit(124, deadline(WAIT));
        assert!(p.stdout_lines().is_empty(), "no READY\n{}", p.describe());
        let err = p.stderr_text();
        assert!(
            err.lines()
                .any(|l| l.contains("missing 127.0.0.1:") && l.contains("fails authentication")),
            "the report names the cause\n{err}"
        );
        assert!(
            err.contains("failed authentication"),
            "drops counted\n{err}"
        );
    }
}

#[test]
fn a_peer_without_the_secret_is_named() {
    let (_dir, mut peers) = pair(
        "auth_missing",
        62,
        "2s",
        [Some("only one of us has it, long"), None],
    );
    for p in peers.iter_mut() {
        p.expect_exit(124, deadline(WAIT));
    }
    let with = peers[0].stderr_text();
    assert!(with.contains("without a MAC"), "{with}");
    let without = peers[1].stderr_text();
    assert!(without.contains("has no --secret-file"), "{without}");
}

#[test]
fn an_unreadable_or_empty_secret_file_is_a_usage_error() {
    let dir = TestDir::new("auth_bad_file");
    let e = entries(63, 1);
    let hosts = dir.hosts("hosts", &e);
    let empty = dir.file("empty");
    std::fs::write(&empty, "\n").unwrap();
    let missing = dir.file("missing");
    for (path, needle) in [(&empty, "is empty"), (&missing, "cannot read secret file")] {
        let path = path.display().to_string();
        let args = peer_args(&hosts, &e[0], "5s", &["--secret-file", &path]);
        let (st, mut p) = run(
            "bad-secret",
            &args,
            Spawn {
                env: &[],
                cwd: None,
            },
        );
        let line = expect_usage_error(&mut p, st, &[needle]);
        assert!(line.contains(&path), "names the file: {line}");
    }
}
