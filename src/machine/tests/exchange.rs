//! The exchange: heartbeats, their answers and retries, and READY once
//! every peer has exchanged both ways and is still heard.

use super::*;

#[test]
fn start_heartbeats_every_known_peer_at_once() {
    let t0 = Instant::now();
    let (n, out) = node(4, 2, params(), t0);
    let targets: Vec<SocketAddr> = sends(&out).iter().map(|s| s.0).collect();
    assert_eq!(targets, vec![addr(1), addr(3), addr(4)]);
    for (_, m) in sends(&out) {
        assert_eq!(m.kind, Kind::Heartbeat);
        assert_eq!(m.from, 2);
        assert!(!m.flags.ready);
    }
    assert_eq!(n.state(), State::Exchanging);
}

#[test]
fn an_asking_heartbeat_is_answered_at_once_by_one_heartbeat_carrying_the_ack() {
    let t0 = Instant::now();
    let (mut n, _) = node(2, 1, params(), t0);
    let fp = hosts::fingerprint(&entries(2));
    // Our start heartbeat went out at t0 and was lost (the peer had not
    // started): its first heartbeat, later, gets one datagram back that
    // both acknowledges it and asks for its acknowledgement.
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 555, 1), t0 + 50 * MS);
    let s = sends(&out);
    assert_eq!(s.len(), 1, "{out:?}");
    let (to, m) = s[0];
    assert_eq!(to, addr(2));
    assert_eq!(m.kind, Kind::Heartbeat);
    assert!(m.ask, "we lack its acknowledgement: {m:?}");
    assert_eq!(m.ack(), Some((555, 1)));
    // It asks again (our answer crossed its retry): answered again, once,
    // without asking again while our question is on its way...
    let crossing = retransmit::UNMEASURED_CROSSING;
    let out = deliver(
        &mut n,
        addr(2),
        hb(fp, 2, 1, 555, 2),
        t0 + 50 * MS + crossing / 2,
    );
    let s = sends(&out);
    assert_eq!(s.len(), 1, "{out:?}");
    assert_eq!(s[0].1.ack(), Some((555, 2)));
    assert!(!s[0].1.ask);
    // ... but asking again once it cannot be crossing any more.
    let out = deliver(
        &mut n,
        addr(2),
        hb(fp, 2, 1, 555, 3),
        t0 + 50 * MS + crossing * 2,
    );
    let s = sends(&out);
    assert_eq!(s.len(), 1, "{out:?}");
    assert!(s[0].1.ask, "{out:?}");
    let asked = s[0].1;
    // A heartbeat that does not ask, and answers ours, is not answered now:
    // its acknowledgement rides on our next heartbeat.
    let mut quiet = hb(fp, 2, 1, 555, 4);
    quiet.ask = false;
    quiet.echo = asked.incarnation;
    quiet.acked = asked.seq;
    let out = deliver(&mut n, addr(2), quiet, t0 + 53 * MS);
    assert!(sends(&out).is_empty(), "{out:?}");
    let next = n.next_deadline().unwrap();
    let out = step(&mut n, Input::Tick, next);
    let s = sends(&out);
    assert_eq!(s.len(), 1, "{out:?}");
    assert_eq!(s[0].1.ack(), Some((555, 4)));
}

#[test]
fn ready_needs_both_a_heartbeat_and_an_acknowledgement() {
    let t0 = Instant::now();
    let (mut n, out) = node(2, 1, params(), t0);
    let fp = hosts::fingerprint(&entries(2));
    let ours = heartbeats_to(&out, addr(2))[0];
    let out = deliver(&mut n, addr(2), ack_of(&ours, 9), t0 + MS);
    assert!(!has_ready(&out));
    assert_eq!(n.state(), State::Exchanging);
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + 2 * MS);
    assert!(has_ready(&out));
    assert!(matches!(n.state(), State::Ready { .. }));
    // READY goes out to the peer at once, with the flag set.
    let hbs = heartbeats_to(&out, addr(2));
    assert_eq!(hbs.len(), 1);
    assert!(hbs[0].flags.ready);
    // The other order: a heartbeat alone is not enough either.
    let (mut n, out) = node(2, 1, params(), t0);
    let ours = heartbeats_to(&out, addr(2))[0];
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + MS);
    assert!(!has_ready(&out));
    assert_eq!(n.state(), State::Exchanging);
    let out = deliver(&mut n, addr(2), ack_of(&ours, 9), t0 + 2 * MS);
    assert!(has_ready(&out));
}

#[test]
fn retransmission_backs_off_from_well_below_the_interval_up_to_it() {
    // A peer never heard: asked again after a twentieth of the interval,
    // doubling. For our first two intervals at most twice (peers started
    // around us may have lost our start heartbeat and we theirs), then up
    // to the interval.
    let t0 = Instant::now();
    let (mut n, _) = node(2, 1, params(), t0);
    let mut sent = t0;
    let mut gaps = Vec::new();
    while gaps.len() < 16 {
        // Other deadlines (progress reports) come in between.
        let now = n.next_deadline().unwrap();
        let out = step(&mut n, Input::Tick, now);
        let heartbeats = heartbeats_to(&out, addr(2)).len();
        assert!(heartbeats <= 1);
        if heartbeats == 1 {
            gaps.push((sent, now - sent));
            sent = now;
        }
    }
    let rto = params().initial_rto();
    let interval = params().interval;
    assert!(rto <= Duration::from_millis(100));
    for (k, &(from, gap)) in gaps.iter().enumerate() {
        let doublings = if from < t0 + interval * 2 {
            k.min(2)
        } else {
            k
        };
        let nominal = (rto * 2u32.pow(doublings as u32)).min(interval);
        assert!(
            gap <= nominal && gap >= nominal.mul_f64(0.75),
            "gap {k} from {:?}: {gap:?} vs {nominal:?}",
            from - t0
        );
    }
    assert!(gaps.last().unwrap().1 >= interval * 3 / 4, "{gaps:?}");
}

#[test]
fn once_acknowledged_heartbeats_go_at_the_interval() {
    let t0 = Instant::now();
    let (mut n, out) = node(2, 1, params(), t0);
    let ours = heartbeats_to(&out, addr(2))[0];
    deliver(&mut n, addr(2), ack_of(&ours, 9), t0 + MS);
    let next = n.next_deadline().unwrap();
    assert!(
        next >= t0 + MS + params().interval.mul_f64(0.75),
        "{:?}",
        next - t0
    );
}

#[test]
fn a_cluster_becomes_ready_within_a_round_trip_of_the_last_start() {
    let t0 = Instant::now();
    let n = 16;
    let mut net = Net::all_but_last(n, t0);
    assert!(net.ready_at.iter().all(Option::is_none));
    let last_start = net.now;
    net.start(n - 1, params(), 999);
    net.run_until(last_start + Duration::from_secs(1));
    for (i, r) in net.ready_at.iter().enumerate() {
        let r = r.unwrap_or_else(|| panic!("node {i} not READY"));
        // Three one-way trips: its heartbeat, their answer, its ack.
        assert!(
            r - last_start <= net.latency * 3,
            "node {i}: {:?}",
            r - last_start
        );
    }
}

#[test]
fn next_deadline_is_the_earliest_timer() {
    let t0 = Instant::now();
    let (n, _) = node(3, 1, params(), t0);
    let d = n.next_deadline().unwrap();
    assert!(d > t0 && d <= t0 + params().initial_rto());
    let fresh = Node::new(&entries(2), 0, 1, 1, 1, params());
    assert_eq!(fresh.next_deadline(), None, "nothing before Start");
}

#[test]
fn ready_needs_every_peer_heard_within_the_silence_threshold() {
    let t0 = Instant::now();
    let p = params();
    let fp = hosts::fingerprint(&entries(3));
    let (mut n, out) = node(3, 1, p, t0);
    let to3 = heartbeats_to(&out, addr(3))[0];
    exchange(&mut n, &out, 2, fp, t0 + MS);
    // Peer 2 dies; three intervals on, it is past the README's silence
    // threshold of two and a half.
    let late = t0 + MS + p.interval * 3;
    deliver(&mut n, addr(3), hb(fp, 3, 1, 9, 1), late);
    let out = deliver(&mut n, addr(3), ack_of(&to3, 9), late);
    assert!(!has_ready(&out), "READY with peer 2 silent for 3 intervals");
    assert_eq!(n.state(), State::Exchanging);
    // The same incarnation heard again (a SIGSTOP ended): READY.
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 2), late + MS);
    assert!(has_ready(&out));
}

#[test]
fn a_peer_that_left_once_ready_counts_while_its_leave_is_recent() {
    // Peer 2 was READY and left (its command ended at once, or its
    // timeout ran out); peer 3 comes later. Heard within the silence
    // threshold, the leave is peer 2's presence, as any datagram is: READY.
    // Longer ago, peer 2 is gone (README, States): no READY, and the
    // report names it as left.
    let t0 = Instant::now();
    let p = params();
    let fp = hosts::fingerprint(&entries(3));
    for (late, ready) in [
        (p.silent_after() - 10 * MS, true),
        (p.silent_after() + 10 * MS, false),
    ] {
        let (mut n, out) = node(3, 1, p, t0);
        let to3 = heartbeats_to(&out, addr(3))[0];
        exchange(&mut n, &out, 2, fp, t0 + MS);
        let leave = ready_leave(hb(fp, 2, 1, 9, 2));
        let left = t0 + 2 * MS;
        let out = deliver(&mut n, addr(2), leave, left);
        assert!(has_event(&out, |e| matches!(e, Event::Left { .. })));
        deliver(&mut n, addr(3), hb(fp, 3, 1, 9, 1), left + late);
        let out = deliver(&mut n, addr(3), ack_of(&to3, 9), left + late);
        assert_eq!(has_ready(&out), ready, "peer 2 left {late:?} before");
        if !ready {
            let out = step(&mut n, Input::Report, left + late + MS);
            let missing = missing_in(&out, true);
            assert_eq!(missing.len(), 1, "{missing:?}");
            assert!(missing[0].left && missing[0].index == 2, "{missing:?}");
        }
    }
}
