//! Multi-process behaviour: peers finding each other, timeouts, late and
//! restarted peers, mismatched hosts files, --barrier.

mod common;

use common::*;
use std::thread;
use std::time::Duration;

/// Start `n` peers of `block`, wait for every one to print READY, then
/// SIGTERM them all and check each printed exactly `READY` and nothing else
/// on stdout, and exited 143.
fn cluster_becomes_ready(test: &str, block: u16, n: u16) {
    let dir = TestDir::new(test);
    let e = entries(block, n);
    let hosts = dir.hosts("hosts", &e);
    let mut peers = start_peers(&hosts, &e, 0..e.len(), "20s", &[]);
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_ready(until);
    }
    for (k, p) in peers.iter_mut().enumerate() {
        let start = p.expect_started(until);
        let want = format!("(peer {} of {n}) bound to", k + 1);
        assert!(
            start.contains(&want),
            "{}: start line lacks {want:?}: {start}",
            p.label
        );
    }
    stop_all_after_one_ready(&mut peers);
}

#[test]
fn two_peers_become_ready() {
    const BLOCK: u16 = 1;
    let dir = TestDir::new("two_peers");
    let e = entries(BLOCK, 2);
    let hosts = dir.hosts("hosts", &e);
    // A short total timeout: after READY the peers run out the timeout and
    // exit 0, so stdout can be checked in full.
    let mut peers = start_peers(&hosts, &e, 0..2, "5s", &[]);
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_ready(until);
    }
    for (k, p) in peers.iter_mut().enumerate() {
        // NAME may be spelled as the entry or its host; the port identifies it.
        let other_port = port(BLOCK, 2 - k as u16).to_string();
        p.expect_line(
            Stream::Stderr,
            "`exchanged with OTHER (2/2)`",
            |l| l.contains("exchanged with ") && l.contains("(2/2)") && l.contains(&other_port),
            until,
        );
        p.expect_line(
            Stream::Stderr,
            "`READY after ...: sent N datagram(s)`",
            |l| l.contains("READY after ") && l.contains(" datagram"),
            until,
        );
    }
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_exit_after_one_ready(0, until);
    }
}

#[test]
fn five_peers_become_ready() {
    cluster_becomes_ready("five_peers", 2, 5);
}

#[test]
fn sixteen_peers_become_ready() {
    cluster_becomes_ready("sixteen_peers", 3, 16);
}

#[test]
fn absent_peer_times_out_with_124() {
    const BLOCK: u16 = 4;
    let dir = TestDir::new("absent_peer");
    let e = entries(BLOCK, 3);
    let hosts = dir.hosts("hosts", &e);
    let mut peers = start_peers(&hosts, &e, 0..2, "2s", &[]);
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_exit(124, until);
        let err = p.stderr_text();
        let desc = p.describe();
        assert!(
            err.contains("timed out after"),
            "{}: no timeout line\n{desc}",
            p.label
        );
        assert!(
            err.contains("1 of 3 peers missing"),
            "{}: no `1 of 3 peers missing`\n{desc}",
            p.label
        );
        let missing = format!("missing {}", e[2]);
        assert!(
            err.contains(&missing),
            "{}: no {missing:?}\n{desc}",
            p.label
        );
        // The peer that did run is not reported missing.
        let other = &e[1 - peers_index(&e, p)];
        assert!(
            !err.contains(&format!("missing {other}")),
            "{}: present peer {other} reported missing\n{desc}",
            p.label
        );
        assert!(
            p.stdout_lines().is_empty(),
            "{}: stdout not empty\n{desc}",
            p.label
        );
    }
}

/// Index in `e` of the entry `p` runs as (from its label).
fn peers_index(e: &[String], p: &Peer) -> usize {
    e.iter()
        .position(|x| p.label.contains(&format!("({x})")))
        .expect("peer label names its entry")
}

#[test]
fn peers_started_seconds_apart() {
    const BLOCK: u16 = 5;
    let dir = TestDir::new("seconds_apart");
    let e = entries(BLOCK, 3);
    let hosts = dir.hosts("hosts", &e);
    let mut first = start_peers(&hosts, &e, 0..2, "20s", &[]);
    let until = deadline(WAIT);
    for p in first.iter_mut() {
        p.expect_started(until);
    }
    // The scenario: the third peer comes up a couple of seconds later.
    thread::sleep(Duration::from_secs(2));
    for p in first.iter_mut() {
        let out = p.stdout_lines();
        assert!(
            out.is_empty(),
            "{}: READY with a peer missing\n{}",
            p.label,
            p.describe()
        );
    }
    let mut third = start_peers(&hosts, &e, 2..3, "20s", &[]);
    let until = deadline(WAIT);
    for p in first.iter_mut().chain(third.iter_mut()) {
        p.expect_ready(until);
    }
}

#[test]
fn restarted_peer_is_welcomed_back() {
    const BLOCK: u16 = 6;
    let dir = TestDir::new("restarted_peer");
    let e = entries(BLOCK, 3);
    let hosts = dir.hosts("hosts", &e);
    let mut peers = start_peers(&hosts, &e, 0..3, "30s", &[]);
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_ready(until);
    }
    peers[1].kill_now();
    let mut again = start_peers(&hosts, &e, 1..2, "30s", &[]).remove(0);
    again.label = format!("restarted {}", again.label);
    let until = deadline(WAIT);
    again.expect_ready(until);

    let (a, rest) = peers.split_at_mut(1);
    let (_, c) = rest.split_at_mut(1);
    let (a, c) = (&mut a[0], &mut c[0]);
    let port2 = port(BLOCK, 2).to_string();
    let seen = wait_any_line(
        &mut [&mut *a, &mut *c],
        Stream::Stderr,
        |l| l.contains("restarted") && l.contains(&port2),
        until,
    );
    assert!(
        seen.is_some(),
        "neither other peer logged `{} restarted`\n{}\n{}",
        e[1],
        a.describe(),
        c.describe()
    );
    for p in [&mut *a, &mut *c] {
        assert!(p.is_running(), "{}: exited\n{}", p.label, p.describe());
    }
    // READY is printed once per process, even when a peer comes back.
    for p in [&mut *a, &mut *c, &mut again] {
        p.signal("TERM");
    }
    let until = deadline(WAIT);
    for p in [a, c, &mut again] {
        p.expect_exit_after_one_ready(143, until);
    }
}

#[test]
fn different_hosts_lists_never_ready() {
    const BLOCK: u16 = 7;
    let dir = TestDir::new("different_hosts");
    let e = entries(BLOCK, 3);
    let hosts_a = dir.hosts("hosts-a", &e[..2]);
    let hosts_b = dir.hosts("hosts-b", &e);
    let mut a = Peer::spawn("peer A", &peer_args(&hosts_a, &e[0], "3s", &[]));
    let mut b = Peer::spawn("peer B", &peer_args(&hosts_b, &e[1], "3s", &[]));
    let until = deadline(WAIT);
    a.expect_exit(124, until);
    b.expect_exit(124, until);
    let warned = [&mut a, &mut b]
        .into_iter()
        .any(|p| p.stderr_text().contains("different hosts list"));
    assert!(
        warned,
        "no `different hosts list` warning\n{}\n{}",
        a.describe(),
        b.describe()
    );
    for p in [&mut a, &mut b] {
        assert!(
            !p.stdout_lines().iter().any(|l| l == "READY"),
            "{}: READY despite different hosts lists\n{}",
            p.label,
            p.describe()
        );
    }
}

#[test]
fn barrier_five_peers_exit_zero() {
    const BLOCK: u16 = 8;
    let dir = TestDir::new("barrier_five");
    let e = entries(BLOCK, 5);
    let hosts = dir.hosts("hosts", &e);
    // --timeout 60s but a 20 s bound: they must exit by the barrier.
    let mut peers = start_peers(&hosts, &e, 0..5, "60s", &["--barrier"]);
    let until = deadline(Duration::from_secs(20));
    for p in peers.iter_mut() {
        p.expect_exit_after_one_ready(0, until);
    }
}

#[test]
fn single_peer_ready_at_once() {
    const BLOCK: u16 = 9;
    let dir = TestDir::new("single_peer");
    let e = entries(BLOCK, 1);
    let hosts = dir.hosts("hosts", &e);
    let mut p = start_peers(&hosts, &e, 0..1, "20s", &[]).remove(0);
    p.expect_ready(deadline(WAIT));
    p.signal("TERM");
    p.expect_exit(143, deadline(WAIT));
    assert_eq!(p.stdout_lines(), vec!["READY"], "stdout\n{}", p.describe());
}

#[test]
fn single_peer_barrier_exits_zero() {
    const BLOCK: u16 = 10;
    let dir = TestDir::new("single_barrier");
    let e = entries(BLOCK, 1);
    let hosts = dir.hosts("hosts", &e);
    let mut p = start_peers(&hosts, &e, 0..1, "60s", &["--barrier"]).remove(0);
    p.expect_exit(0, deadline(WAIT));
    assert_eq!(p.stdout_lines(), vec!["READY"], "stdout\n{}", p.describe());
}

#[test]
fn default_port_applies_to_portless_entry() {
    const BLOCK: u16 = 11;
    let dir = TestDir::new("default_port");
    let p1 = port(BLOCK, 1).to_string();
    let hosts = dir.hosts("hosts", &["127.0.0.1".to_string()]);
    // The name matches the entry's HOST; the port comes from --port.
    let mut p = Peer::spawn(
        "portless",
        &peer_args(&hosts, "127.0.0.1", "20s", &["--port", &p1]),
    );
    let until = deadline(WAIT);
    let start = p.expect_started(until);
    assert!(
        start.contains(&format!(":{p1}")),
        "start line does not show port {p1}: {start}"
    );
    p.expect_ready(until);
}
