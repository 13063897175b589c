//! The failure detector's two figures, measured on real processes at
//! `-i 1s`: how soon a killed peer is reported `down`, and how often a live
//! peer is taken for `suspect` or `down` under random loss.
//!
//! Both are measurements, run by hand (they take about 40 s and about two
//! minutes):
//!
//! ```text
//! cargo test --release --test detect -- --ignored --test-threads 1 --nocapture
//! ```
//!
//! Each prints its figures and asserts the contract, which comes from the
//! README and not from the code: a killed peer is reported down by every
//! other peer within 3 s, after a silence of at least 2.5 intervals; a
//! live peer is never reported down, at 20% loss over 16 peers.
//!
//! The kills run on loopback, port block 95. The loss runs in network
//! namespaces ([`LossyNet`], tests/common/netns.rs) named `rc<pid>-fp...`,
//! on 10.232.0.1 to 10.232.0.16, which exist only there; it needs root,
//! `ip` and `nft`, and without them prints a SKIP line (fails under
//! CI=true).

mod common;
#[path = "common/netns.rs"]
mod netns;

use common::*;
use netns::{Layout, LossyNet, skip_or_fail};
use std::time::{Duration, Instant, SystemTime};

/// The peers' heartbeat interval: the one the README's figures are for.
const INTERVAL_1S: &str = "1s";
const ONE_INTERVAL: Duration = Duration::from_secs(1);

/// Readings sorted: min, median, 90th percentile (nearest rank), max.
fn summary(readings: &[Duration]) -> String {
    assert!(!readings.is_empty(), "no readings");
    let mut r = readings.to_vec();
    r.sort();
    let rank = |q: f64| r[((q * r.len() as f64).ceil() as usize).clamp(1, r.len()) - 1];
    let ms = |d: Duration| format!("{:.3} s", d.as_secs_f64());
    format!(
        "min {} / median {} / p90 {} / max {} ({} readings)",
        ms(r[0]),
        ms(rank(0.5)),
        ms(rank(0.9)),
        ms(r[r.len() - 1]),
        r.len()
    )
}

/// The time a log line carries (its first word, RFC 3339 in milliseconds).
fn stamp(line: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(line.split_whitespace().next()?).ok()
}

// --- Detection time ----------------------------------------------------

const KILL_BLOCK: u16 = 95;
const CLUSTER: usize = 5;
/// One kill per cluster, each in a fresh cluster on ports of its own.
const KILLS: usize = 10;
/// The issue's contract: "a killed peer is reported down by every other
/// peer within 3 s". The README's thresholds give at most 2.5 intervals
/// after the peer was last heard, which is at most the kill: 0.5 s is left
/// for the scheduler, the log and this test reading the line.
const DOWN_WITHIN: Duration = Duration::from_secs(3);

/// One reading: a survivor's `down` line about the killed peer.
struct Reading {
    round: usize,
    survivor: String,
    /// From the kill to this test reading the line (an upper bound: the
    /// peers' pipes are polled in turn, a few milliseconds apart).
    read: Duration,
    /// From the kill to the time the line carries (to the millisecond).
    stamped: Option<Duration>,
    /// The silence the line reports.
    silence: Duration,
}

/// Clusters of five peers at `-i 1s` on loopback. In each, once every peer
/// is READY and after a wait that moves the kill across the heartbeat
/// round (1.0 s to 1.9 s), one peer is killed with SIGKILL (each index
/// twice over the ten clusters); the time from the kill to each survivor's
/// `down` line is one reading: 40 in all. Prints min/median/p90/max.
///
/// Asserts the contract: every reading within 3 s; every `down` line
/// reporting a silence of at least 2.5 intervals (a detector that accuses
/// early would otherwise pass the bound for the wrong reason), preceded by
/// `suspect`; no live peer reported `down`; each survivor exits 143 on
/// SIGTERM having printed READY once.
///
/// How it fails: a detector whose `down` comes later than 3 s after the
/// kill (thresholds raised, a timer that fires late, a survivor that waits
/// on probes that cannot be answered), or earlier than the threshold.
#[test]
#[ignore = "a measurement: run by hand with --ignored --nocapture (about 40 s)"]
fn a_killed_peer_is_reported_down_within_3s() {
    let _one_at_a_time = serial();
    let dir = TestDir::new("detect_kill");
    let mut readings: Vec<Reading> = Vec::new();
    for round in 0..KILLS {
        let e: Vec<String> = (1..=CLUSTER)
            .map(|i| {
                format!(
                    "127.0.0.1:{}",
                    port(KILL_BLOCK, (CLUSTER * round + i) as u16)
                )
            })
            .collect();
        let hosts = dir.hosts(&format!("hosts{round}"), &e);
        let mut peers = start_peers_every(&hosts, &e, 0..CLUSTER, INTERVAL_1S, "120s", &[]);
        let until = deadline(WAIT);
        for p in peers.iter_mut() {
            p.expect_ready(until);
        }
        std::thread::sleep(ONE_INTERVAL + ONE_INTERVAL * round as u32 / KILLS as u32);

        let victim = round % CLUSTER;
        let entry = e[victim].clone();
        let live: Vec<String> = e.iter().filter(|x| **x != entry).cloned().collect();
        let (before, rest) = peers.split_at_mut(victim);
        let (killed_peer, after) = rest.split_first_mut().expect("the victim");
        let mut survivors: Vec<&mut Peer> = before.iter_mut().chain(after.iter_mut()).collect();
        let marks: Vec<usize> = survivors
            .iter_mut()
            .map(|p| p.mark(Stream::Stderr))
            .collect();

        let killed_at = SystemTime::now();
        let killed = Instant::now();
        killed_peer.kill_now();
        let seen = wait_each_line(
            &mut survivors,
            Stream::Stderr,
            &marks,
            Change::Down.of(&entry),
            killed + WAIT,
        );
        for (p, s) in survivors.iter_mut().zip(seen) {
            let Some((at, line)) = s else {
                panic!(
                    "round {round}: {} never reported the killed {entry} down within {WAIT:?}\n{}",
                    p.label.clone(),
                    brief(p)
                );
            };
            let silence = Change::silence(&line)
                .unwrap_or_else(|| panic!("{}: no silence in {line:?}", p.label));
            let r = Reading {
                round,
                survivor: p.label.clone(),
                read: at.duration_since(killed),
                stamped: stamp(&line).map(|t| t.duration_since(killed_at).unwrap_or_default()),
                silence,
            };
            eprintln!(
                "round {round}: kill of {entry}: {} read `down` {:.3} s after the kill \
                 (line stamped {}, reports silent for {:?})",
                r.survivor,
                r.read.as_secs_f64(),
                r.stamped
                    .map_or("?".into(), |d| format!("{:.3} s", d.as_secs_f64())),
                r.silence
            );
            readings.push(r);
        }

        for p in survivors.iter() {
            p.signal("TERM");
        }
        let until = deadline(WAIT);
        for p in survivors.iter_mut() {
            p.expect_exit_after_one_ready(143, until);
        }
        for (p, &from) in survivors.iter_mut().zip(&marks) {
            let log = p.stderr_lines();
            if let Some(l) = log.iter().find(|l| Change::Down.of_any(&live)(l)) {
                panic!(
                    "round {round}: {} reported a live peer down: {l:?}\n{}",
                    p.label.clone(),
                    brief(p)
                );
            }
            let log = &log[from..];
            let suspect = position(log, Change::Suspect.of(&entry));
            let down = position(log, Change::Down.of(&entry));
            assert!(
                suspect.is_some_and(|s| down.is_some_and(|d| s < d)),
                "round {round}: {}: not `suspect` then `down` about {entry}\n{}",
                p.label.clone(),
                brief(p)
            );
        }
    }

    let read: Vec<Duration> = readings.iter().map(|r| r.read).collect();
    let stamped: Vec<Duration> = readings.iter().filter_map(|r| r.stamped).collect();
    let silence: Vec<Duration> = readings.iter().map(|r| r.silence).collect();
    eprintln!("detection at -i 1s, {KILLS} kills of 1 of {CLUSTER} peers, loopback:");
    eprintln!("  kill to `down` read:         {}", summary(&read));
    eprintln!("  kill to `down` line's stamp: {}", summary(&stamped));
    eprintln!("  silence reported by `down`:  {}", summary(&silence));

    let least = ONE_INTERVAL * 5 / 2;
    let early: Vec<String> = readings
        .iter()
        .filter(|r| r.silence < least)
        .map(|r| format!("round {}: {}: {:?}", r.round, r.survivor, r.silence))
        .collect();
    assert!(
        early.is_empty(),
        "`down` after a silence under {least:?}: {early:#?}"
    );
    let late: Vec<String> = readings
        .iter()
        .filter(|r| r.read > DOWN_WITHIN)
        .map(|r| format!("round {}: {}: {:?}", r.round, r.survivor, r.read))
        .collect();
    assert!(
        late.is_empty(),
        "`down` read later than {DOWN_WITHIN:?} after the kill: {late:#?}"
    );
}

// --- False positives under loss ---------------------------------------

const LOSS_LAYOUT: Layout = Layout {
    tag: "fp",
    subnet: "10.232.0",
    peers: 16,
    port: 7620,
    loss_percent: 20,
};
/// How long the READY cluster is watched.
const WINDOW: Duration = Duration::from_secs(120);
/// READY needs every one of 240 ordered pairs to get a heartbeat and an
/// acknowledgement through 20% loss each way: seconds, bounded at a minute.
const READY_WAIT: Duration = Duration::from_secs(60);

/// How many of `lines` report `change` about any of `entries`.
fn count(lines: &[String], change: Change, entries: &[String]) -> usize {
    let is = change.of_any(entries);
    lines.iter().filter(|l| is(l)).count()
}

/// Sixteen peers at `-i 1s`, each in a network namespace of its own, with
/// nftables dropping 20% of the UDP datagrams reaching every peer (36% of
/// round trips lose one leg). Once every peer is READY the cluster runs
/// for 120 s; every peer stays alive throughout, so every `suspect` and
/// `down` line is a false positive. Prints the suspect, down and up counts
/// and the drop rate the nftables counters show over the window.
///
/// Asserts the contract: no `down` about a live peer (from start to the
/// end of the window), no `left` or `restarted` either; the loss was real
/// (15% to 25% of at least 1000 datagrams dropped in the window: 20% of
/// tens of thousands is within a fraction of a percent); every peer exits
/// 143 on SIGTERM having printed READY once.
///
/// How it fails: a detector that accuses on a few lost heartbeats (a
/// passive timeout, probes that stop, probes that go only one way), or a
/// loss rule that does not drop.
#[test]
#[ignore = "a measurement: run by hand with --ignored --nocapture (about two minutes)"]
fn sixteen_live_peers_under_20_percent_loss_are_never_down() {
    const TEST: &str = "detect::sixteen_live_peers_under_20_percent_loss_are_never_down";
    let _one_at_a_time = serial();
    let dir = TestDir::new("detect_loss");
    let mut net = match LossyNet::build(&dir.path, LOSS_LAYOUT) {
        Ok(net) => net,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let hosts = dir.hosts("hosts", &net.entries);
    let hosts = hosts.display().to_string();
    let started = Instant::now();
    net.start_peers(|entry| {
        [
            "--hosts",
            &hosts,
            "--name",
            entry,
            "--interval",
            INTERVAL_1S,
            "--timeout",
            "600s",
        ]
        .map(String::from)
        .to_vec()
    });
    let until = deadline(READY_WAIT);
    for p in net.peers.iter_mut() {
        p.expect_ready(until);
    }
    let all_ready = started.elapsed();

    let from: Vec<usize> = net
        .peers
        .iter_mut()
        .map(|p| p.mark(Stream::Stderr))
        .collect();
    let counted_from = net.counters();
    let window_start = Instant::now();
    while window_start.elapsed() < WINDOW {
        std::thread::sleep(ONE_INTERVAL.min(WINDOW.saturating_sub(window_start.elapsed())));
        for p in net.peers.iter_mut() {
            if !p.is_running() {
                panic!("{} exited during the window\n{}", p.label.clone(), brief(p));
            }
            p.drain();
        }
    }
    let watched = window_start.elapsed();
    let to: Vec<usize> = net
        .peers
        .iter_mut()
        .map(|p| p.mark(Stream::Stderr))
        .collect();
    let counted_to = net.counters();
    stop_all_after_one_ready(&mut net.peers);

    let entries = net.entries.clone();
    // In this order: the counts are unpacked by it below.
    let changes = [
        Change::Suspect,
        Change::Down,
        Change::Up,
        Change::Restarted,
        Change::Left,
    ];
    let (mut before, mut window) = ([0usize; 5], [0usize; 5]);
    let mut downs = Vec::new();
    for (k, p) in net.peers.iter_mut().enumerate() {
        let log = p.stderr_lines();
        for (c, &change) in changes.iter().enumerate() {
            before[c] += count(&log[..from[k]], change, &entries);
            window[c] += count(&log[from[k]..to[k]], change, &entries);
        }
        downs.extend(
            log[..to[k]]
                .iter()
                .filter(|l| Change::Down.of_any(&entries)(l))
                .map(|l| format!("{}: {l}", p.label)),
        );
    }
    let (mut dropped, mut accepted) = (0u64, 0u64);
    for ((ns, (d0, a0)), (d1, a1)) in net.peer_ns.iter().zip(&counted_from).zip(&counted_to) {
        assert!(a1 > a0, "{ns}: no UDP datagram got through in the window");
        dropped += d1 - d0;
        accepted += a1 - a0;
    }
    let total = dropped + accepted;
    let percent = dropped as f64 * 100.0 / total.max(1) as f64;
    let [suspect, down, up, restarted, left] = window;
    eprintln!(
        "false positives at -i 1s: {} peers, {}% UDP loss at every peer's ingress, \
         READY after {:.1} s, then watched for {:.1} s:",
        LOSS_LAYOUT.peers,
        LOSS_LAYOUT.loss_percent,
        all_ready.as_secs_f64(),
        watched.as_secs_f64()
    );
    eprintln!("  nftables dropped {dropped} of {total} UDP datagrams in the window: {percent:.2}%");
    eprintln!(
        "  about live peers, in the window: {suspect} suspect, {down} down, {up} up, \
         {restarted} restarted, {left} left"
    );
    eprintln!(
        "  before the window (until every peer was READY): {} suspect, {} down",
        before[0], before[1]
    );
    const SHOWN: usize = 20;
    assert!(
        downs.is_empty(),
        "{} `down` lines about live peers; the first {}:\n{}",
        downs.len(),
        SHOWN.min(downs.len()),
        downs[..SHOWN.min(downs.len())].join("\n")
    );
    assert_eq!(
        restarted + left + before[3] + before[4],
        0,
        "no peer restarted or left, yet some were reported so"
    );
    assert!(
        total >= 1000,
        "only {total} UDP datagrams reached the peers in {watched:?}"
    );
    assert!(
        (15.0..=25.0).contains(&percent),
        "the drop rule dropped {percent:.2}% ({dropped} of {total}), not about {}%",
        LOSS_LAYOUT.loss_percent
    );

    net.teardown();
}
