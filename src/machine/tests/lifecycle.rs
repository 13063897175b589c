//! How a node ends: its timeout, signals and the barrier, with the exit
//! status of each.

use super::*;

#[test]
fn timeout_after_ready_exits_0() {
    let t0 = Instant::now();
    let p = Params {
        timeout: Duration::from_secs(1),
        ..params()
    };
    let (mut n, out) = node(1, 1, p, t0);
    assert!(has_ready(&out), "a single entry is READY at once");
    let out = step(&mut n, Input::Tick, t0 + Duration::from_secs(1));
    assert_eq!(exit_of(&out), Some(Reason::TimeoutAfterReady(p.timeout)));
    assert_eq!(Reason::TimeoutAfterReady(p.timeout).exit().code(), 0);
}

#[test]
fn signals_stop_at_once_with_their_codes() {
    // As shells report them: 128 + the signal's number.
    let codes = [
        (Stop(1), 129),
        (Stop::INTERRUPT, 130),
        (Stop::TERMINATE, 143),
        (Stop(34), 162),
    ];
    for (stop, code) in codes {
        let t0 = Instant::now();
        let (mut n, _) = node(3, 1, params(), t0);
        let out = step(&mut n, Input::Stop(stop), t0 + MS);
        assert_eq!(exit_of(&out).map(|r| r.exit().code()), Some(code));
        assert!(n.finished());
    }
}

#[test]
fn barrier_exits_once_every_peer_is_ready_and_has_said_so() {
    let t0 = Instant::now();
    let p = Params {
        barrier: true,
        ..params()
    };
    let mut net = Net::new(5, t0);
    for i in 0..5 {
        net.start(i, p, 1 + i as u64);
    }
    net.run_until(t0 + Duration::from_millis(50));
    for (i, exit) in net.exits.iter().enumerate() {
        assert_eq!(*exit, Some(Reason::BarrierComplete), "node {i}");
    }
}

#[test]
fn barrier_alone_exits_at_once() {
    let t0 = Instant::now();
    let p = Params {
        barrier: true,
        ..params()
    };
    let (_, out) = node(1, 1, p, t0);
    assert!(has_ready(&out));
    assert_eq!(exit_of(&out), Some(Reason::BarrierComplete));
}

#[test]
fn barrier_lingers_at_most_the_linger_when_confirmations_are_lost() {
    let t0 = Instant::now();
    let p = Params {
        barrier: true,
        ..params()
    };
    let (mut n, out) = node(2, 1, p, t0);
    let fp = hosts::fingerprint(&entries(2));
    let ours = heartbeats_to(&out, addr(2))[0];
    deliver(&mut n, addr(2), ack_of(&ours, 9), t0 + MS);
    let mut theirs = hb(fp, 2, 1, 9, 1);
    theirs.flags.ready = true;
    deliver(&mut n, addr(2), theirs, t0 + MS);
    assert!(matches!(n.state(), State::Draining { .. }));
    // The peer never confirms: we leave at the end of the linger, READY.
    let (now, out) = run_to_exit(&mut n);
    assert_eq!(exit_of(&out), Some(Reason::BarrierLingered));
    // The README: a node that passed the barrier lingers at most one
    // interval.
    assert!(now <= t0 + MS + p.interval, "{:?}", now - t0);
}

#[test]
fn with_barrier_a_timeout_before_every_ready_is_heard_exits_124() {
    let t0 = Instant::now();
    let p = Params {
        barrier: true,
        timeout: Duration::from_secs(4),
        ..params()
    };
    let fp = hosts::fingerprint(&entries(3));
    let (mut n, out) = node(3, 1, p, t0);
    for id in [2, 3] {
        exchange(&mut n, &out, id, fp, t0 + MS);
    }
    assert!(matches!(n.state(), State::Ready { .. }));
    // Peer 2 says READY; peer 3 dies before it does.
    let mut ready = hb(fp, 2, 1, 9, 2);
    ready.flags.ready = true;
    deliver(&mut n, addr(2), ready, t0 + 2 * MS);
    let (now, out) = run_to_exit(&mut n);
    assert_eq!(now, t0 + p.timeout);
    let reason = exit_of(&out).unwrap();
    assert_eq!(reason.exit().code(), 124, "{reason}");
    let text = timed_out_text(&out);
    assert!(
        text.contains("before the barrier passed: 1 of 3 peers missing"),
        "{text}"
    );
    assert!(text.contains("missing 127.0.0.1:7003:"), "{text}");
    assert!(text.contains("not READY yet"), "{text}");
}

#[test]
fn with_barrier_a_peer_that_left_ready_is_not_missing_however_long_ago() {
    // Once we are READY, a barrier waits for the peers' READY: peer 2 said
    // it and left long before the timeout, so only peer 3, alive but not
    // READY, is named.
    let t0 = Instant::now();
    let p = Params {
        barrier: true,
        timeout: Duration::from_secs(8),
        ..params()
    };
    let fp = hosts::fingerprint(&entries(3));
    let (mut n, out) = node(3, 1, p, t0);
    for id in [2, 3] {
        exchange(&mut n, &out, id, fp, t0 + MS);
    }
    assert!(matches!(n.state(), State::Ready { .. }));
    deliver(
        &mut n,
        addr(2),
        ready_leave(hb(fp, 2, 1, 9, 2)),
        t0 + 2 * MS,
    );
    for (k, at) in [2, 4, 6, 7].into_iter().enumerate() {
        let seq = 2 + k as u64;
        deliver(
            &mut n,
            addr(3),
            hb(fp, 3, 1, 9, seq),
            t0 + Duration::from_secs(at),
        );
    }
    let (now, out) = run_to_exit(&mut n);
    assert_eq!(now, t0 + p.timeout);
    assert!(now - t0 > p.silent_after());
    let text = timed_out_text(&out);
    assert!(
        text.contains("before the barrier passed: 1 of 3 peers missing"),
        "{text}"
    );
    assert!(text.contains("missing 127.0.0.1:7003:"), "{text}");
    assert!(!text.contains("127.0.0.1:7002"), "{text}");
}

#[test]
fn a_lingering_barrier_passes_at_the_timeout_with_0() {
    let t0 = Instant::now();
    let p = Params {
        barrier: true,
        timeout: Duration::from_millis(500),
        ..params()
    };
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, out) = node(2, 1, p, t0);
    let ours = heartbeats_to(&out, addr(2))[0];
    deliver(&mut n, addr(2), ack_of(&ours, 9), t0 + MS);
    let mut theirs = hb(fp, 2, 1, 9, 1);
    theirs.flags.ready = true;
    deliver(&mut n, addr(2), theirs, t0 + MS);
    assert!(matches!(n.state(), State::Draining { .. }));
    let out = step(&mut n, Input::Tick, t0 + p.timeout);
    assert_eq!(exit_of(&out).map(|r| r.exit().code()), Some(0));
}
