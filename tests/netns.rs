//! Real packet loss: eight peers, each in a network namespace of its own,
//! joined by veth pairs to a bridge in one more namespace, with nftables
//! dropping 30% of the UDP datagrams that reach each peer.
//!
//! The network is a [`LossyNet`] (tests/common/netns.rs): the addresses
//! 10.231.0.1 to 10.231.0.8 exist only in namespaces the test creates and
//! names `rc<pid>-...`, which are deleted, after the peers are killed, on
//! every way out.
//!
//! It needs root, `ip` and `nft`. Without them it prints a SKIP line and
//! passes, unless CI=true, where it fails: CI must run it.

mod common;
#[path = "common/netns.rs"]
mod netns;

use common::*;
use netns::{Layout, LossyNet, skip_or_fail};
use std::io::Write;
use std::time::Duration;

const LAYOUT: Layout = Layout {
    tag: "",
    subnet: "10.231.0",
    peers: 8,
    port: 7610,
    loss_percent: 30,
};
const PEER_INTERVAL: &str = "500ms";
/// Generous: READY needs every one of 56 ordered pairs to get a heartbeat
/// and an acknowledgement through 30% loss each way.
const READY_WAIT: Duration = Duration::from_secs(60);

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
    let dir = TestDir::new("netns");
    // The guard owns the peers: they are killed before the namespaces
    // are deleted, so no process is left in a namespace when it goes.
    let mut net = match LossyNet::build(&dir.path, LAYOUT) {
        Ok(net) => net,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let hosts = dir.hosts("hosts", &net.entries);
    let hosts = hosts.display().to_string();
    net.start_peers(|entry| {
        [
            "--hosts",
            &hosts,
            "--name",
            entry,
            "--interval",
            PEER_INTERVAL,
            "--timeout",
            "120s",
        ]
        .map(String::from)
        .to_vec()
    });

    let until = deadline(READY_WAIT);
    for p in net.peers.iter_mut() {
        p.expect_ready(until);
    }
    stop_all_after_one_ready(&mut net.peers);

    for p in net.peers.iter_mut() {
        let log = p.stderr_lines();
        let ready = log.iter().find(|l| l.contains("READY after"));
        eprintln!("{}: {}", p.label, ready.map_or("?", |l| l.as_str()));
    }

    let (mut dropped, mut accepted) = (0, 0);
    for (ns, (d, a)) in net.peer_ns.iter().zip(net.counters()) {
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
            "the drop rule dropped {percent}% ({dropped} of {total}), not about {}%",
            LAYOUT.loss_percent
        );
    }

    net.teardown();
}
