//! Restarts: a new incarnation is exchanged with afresh, an earlier one is
//! never taken back, and a process behind the clock is told what to take.

use super::*;

#[test]
fn a_restarted_peer_is_exchanged_with_again_and_ready_is_not_repeated() {
    let t0 = Instant::now();
    let mut net = Net::new(3, t0);
    for i in 0..3 {
        net.start(i, params(), 10 + i as u64);
    }
    net.run_until(t0 + Duration::from_secs(1));
    assert!(net.ready_at.iter().all(Option::is_some));
    // Peer 2 crashes and comes back with a new incarnation.
    net.crash(1);
    net.run_until(t0 + Duration::from_secs(3));
    net.start(1, params(), 50);
    let restart = net.now;
    net.run_until(restart + Duration::from_secs(1));
    assert!(net.ready_at[1].is_some_and(|r| r - restart <= net.latency * 3));
    for i in [0, 2] {
        let node = net.nodes[i].as_ref().unwrap();
        assert!(matches!(node.state(), State::Ready { .. }));
        assert!(node.peers.iter().all(Peer::exchanged), "node {i}");
    }
}

#[test]
fn an_earlier_incarnation_is_stale_while_the_peer_is_alive() {
    let t0 = Instant::now();
    let (mut n, _) = node(2, 1, params(), t0);
    let fp = hosts::fingerprint(&entries(2));
    deliver(&mut n, addr(2), hb(fp, 2, 1, 50, 1), t0 + MS);
    deliver(&mut n, addr(2), hb(fp, 2, 1, 40, 9), t0 + 2 * MS);
    assert_eq!(n.stats().dropped[Drop::Stale.index()], 1);
    // A later incarnation is a restart.
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 60, 1), t0 + 3 * MS);
    assert!(has_event(&out, |e| matches!(e, Event::Restarted { .. })));
}

#[test]
fn an_earlier_incarnation_is_never_taken_back_but_told_what_to_take() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    for authenticated in [false, true] {
        let p = Params {
            authenticated,
            ..params()
        };
        let (mut n, _) = node(2, 1, p, t0);
        deliver(&mut n, addr(2), hb(fp, 2, 1, 50, 1), t0 + MS);
        // Long after the peer went silent, an earlier incarnation speaks:
        // a replay, or a restart behind the clock. Not believed, but told
        // which incarnation we know.
        let later = t0 + Duration::from_secs(60);
        let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 40, 7), later);
        let answers: Vec<_> = sends(&out)
            .into_iter()
            .filter(|(_, m)| m.kind != Kind::Heartbeat)
            .collect();
        assert_eq!(answers.len(), 1, "authenticated {authenticated}: {out:?}");
        let (to, m) = answers[0];
        assert_eq!(to, addr(2));
        assert_eq!((m.kind, m.echo, m.acked, m.to), (Kind::Stale, 50, 7, 2));
        assert_eq!(n.stats().dropped[Drop::Stale.index()], 1);
        assert!(!has_event(&out, |e| matches!(e, Event::Restarted { .. })));
    }
}

#[test]
fn a_new_incarnation_of_ours_has_acknowledged_nobody_yet() {
    // We answered peer 2, then took a new incarnation: peer 2 forgets the
    // old one and needs our new one's acknowledgement, so its next
    // heartbeat is answered even though it does not ask.
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, out) = node(2, 1, params(), t0);
    let first = heartbeats_to(&out, addr(2))[0];
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + MS);
    assert_eq!(heartbeats_to(&out, addr(2))[0].ack(), Some((9, 1)));
    let stale = Message {
        kind: Kind::Stale,
        echo: 5000,
        ..ack_of(&first, 9)
    };
    let at = t0 + 2 * MS;
    deliver(&mut n, addr(2), stale, at);
    assert!(n.incarnation() > 5000);
    let mut quiet = hb(fp, 2, 1, 9, 2);
    quiet.ask = false;
    let out = deliver(
        &mut n,
        addr(2),
        quiet,
        at + retransmit::UNMEASURED_CROSSING / 2,
    );
    let s = heartbeats_to(&out, addr(2));
    assert_eq!(s.len(), 1, "{out:?}");
    assert_eq!(s[0].ack(), Some((9, 2)));
}

#[test]
fn told_of_a_newer_incarnation_of_itself_a_node_takes_one_above_it() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, out) = node(2, 1, params(), t0);
    let first = heartbeats_to(&out, addr(2))[0];
    assert_eq!(n.incarnation(), 1001);
    // A stale notice for something we never sent is not believed.
    let mut bogus = Message {
        kind: Kind::Stale,
        echo: 5000,
        ..ack_of(&first, 9)
    };
    bogus.acked = 99;
    deliver(&mut n, addr(2), bogus, t0 + MS);
    assert_eq!(n.incarnation(), 1001);
    // Peer 2 knows incarnation 5000 of entry 1 (our previous process).
    let stale = Message {
        kind: Kind::Stale,
        echo: 5000,
        ..ack_of(&first, 9)
    };
    let out = deliver(&mut n, addr(2), stale, t0 + 2 * MS);
    // Above the known one, by a step of at most 2^24 µs.
    let taken = n.incarnation();
    assert!(taken > 5000 && taken <= 5000 + (1 << 24), "{taken}");
    assert!(
        out.iter().any(|a| matches!(
            a,
            Action::Event(Event::Reincarnated { incarnation, .. }) if *incarnation == taken
        )),
        "{out:?}"
    );
    // It heartbeats again at once, from the new incarnation.
    let again = heartbeats_to(&out, addr(2));
    assert_eq!(again.len(), 1, "{out:?}");
    assert_eq!(again[0].incarnation, taken);
    // An acknowledgement of the old incarnation no longer counts; one of
    // the new one does.
    deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + 3 * MS);
    deliver(&mut n, addr(2), ack_of(&first, 9), t0 + 3 * MS);
    assert_eq!(n.state(), State::Exchanging);
    let out = deliver(&mut n, addr(2), ack_of(&again[0], 9), t0 + 4 * MS);
    assert!(has_ready(&out));
    // A replayed notice naming an incarnation below ours changes nothing;
    // nor does one naming ours, the answer to a replay of our previous
    // process's heartbeat.
    deliver(&mut n, addr(2), stale, t0 + 5 * MS);
    assert_eq!(n.incarnation(), taken);
    let ours = Message {
        echo: taken,
        ..stale
    };
    let out = deliver(&mut n, addr(2), ours, t0 + 6 * MS);
    assert_eq!(n.incarnation(), taken);
    assert!(!has_event(&out, |e| matches!(
        e,
        Event::Reincarnated { .. }
    )));
}

#[test]
fn a_restart_behind_the_clock_is_exchanged_with_on_both_sides() {
    // Node 2's second process starts with a lower incarnation than its
    // first, which node 1 knows: with and without a secret they exchange.
    for authenticated in [false, true] {
        let t0 = Instant::now();
        let p = Params {
            authenticated,
            ..params()
        };
        let mut net = Net::new(2, t0);
        net.start(0, p, 100);
        net.start(1, p, 900);
        net.run_until(t0 + Duration::from_millis(20));
        assert!(net.ready_at.iter().all(Option::is_some));
        net.crash(1);
        net.now = t0 + Duration::from_millis(30);
        net.start(1, p, 500);
        net.run_until(t0 + Duration::from_millis(60));
        assert!(net.ready_at[1].is_some(), "authenticated {authenticated}");
        assert!(net.nodes[1].as_ref().unwrap().incarnation() > 900);
    }
}

#[test]
fn two_processes_told_the_same_incarnation_take_different_ones() {
    // Two processes of entry 1, restarted behind the clock one after the
    // other, both told that peer 2 knows incarnation 5000: the second must
    // not speak with the first one's incarnation, which would be a replay
    // to every peer that heard the first.
    let t0 = Instant::now();
    let e = entries(2);
    let fp = hosts::fingerprint(&e);
    let taken: Vec<u64> = [11, 12]
        .into_iter()
        .map(|seed| {
            let mut n = Node::new(&e, 0, fp, 1001, seed, params());
            let out = step(&mut n, Input::Start, t0);
            let ours = heartbeats_to(&out, addr(2))[0];
            let stale = Message {
                kind: Kind::Stale,
                echo: 5000,
                ..ack_of(&ours, 9)
            };
            deliver(&mut n, addr(2), stale, t0 + MS);
            n.incarnation()
        })
        .collect();
    assert!(taken.iter().all(|&t| t > 5000), "{taken:?}");
    assert_ne!(taken[0], taken[1]);
}
