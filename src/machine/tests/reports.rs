//! What a node says while it waits and when it gives up: who is missing
//! what, in words.

use super::*;

#[test]
fn timeout_before_ready_names_every_missing_peer_and_exits_124() {
    let t0 = Instant::now();
    let p = Params {
        timeout: Duration::from_secs(5),
        ..params()
    };
    let (mut n, out) = node(3, 1, p, t0);
    // Peer 2 answers everything; peer 3 only acknowledges.
    let fp = hosts::fingerprint(&entries(3));
    let to2 = heartbeats_to(&out, addr(2))[0];
    let to3 = heartbeats_to(&out, addr(3))[0];
    deliver(&mut n, addr(2), ack_of(&to2, 20), t0 + MS);
    deliver(&mut n, addr(2), hb(fp, 2, 1, 20, 1), t0 + MS);
    deliver(&mut n, addr(3), ack_of(&to3, 30), t0 + MS);
    let (now, out) = run_to_exit(&mut n);
    assert_eq!(now, t0 + Duration::from_secs(5));
    assert_eq!(exit_of(&out), Some(Reason::TimeoutBeforeReady(p.timeout)));
    assert_eq!(Reason::TimeoutBeforeReady(p.timeout).exit().code(), 124);
    let report = timed_out_text(&out);
    assert!(report.contains("1 of 3 peers missing"), "{report}");
    assert!(
        report.contains("missing 127.0.0.1:7003: no heartbeat received, last heard"),
        "{report}"
    );
    assert!(!report.contains("7002"), "{report}");
    assert!(n.finished());
    assert!(
        step(&mut n, Input::Tick, now + MS).is_empty(),
        "nothing after the exit"
    );
}

#[test]
fn a_peer_silent_at_the_timeout_is_named_as_such() {
    let t0 = Instant::now();
    let p = Params {
        timeout: Duration::from_secs(30),
        ..params()
    };
    let fp = hosts::fingerprint(&entries(3));
    let (mut n, out) = node(3, 1, p, t0);
    exchange(&mut n, &out, 2, fp, t0 + MS);
    let out = step(&mut n, Input::Tick, t0 + p.timeout);
    assert_eq!(exit_of(&out), Some(Reason::TimeoutBeforeReady(p.timeout)));
    let text = timed_out_text(&out);
    assert!(text.contains("2 of 3 peers missing"), "{text}");
    assert!(
        text.contains("missing 127.0.0.1:7002: exchanged, then fell silent, last heard 29s"),
        "{text}"
    );
}

#[test]
fn a_wrong_source_is_named_in_the_report() {
    let t0 = Instant::now();
    let p = Params {
        timeout: Duration::from_secs(5),
        ..params()
    };
    let (mut n, _) = node(2, 1, p, t0);
    let fp = hosts::fingerprint(&entries(2));
    let from: SocketAddr = "127.0.0.2:7002".parse().unwrap();
    deliver(&mut n, from, hb(fp, 2, 1, 9, 1), t0 + MS);
    let text = timed_out_text(&step(&mut n, Input::Tick, t0 + p.timeout));
    assert!(
        text.contains("its datagrams came from 127.0.0.2:7002, which is not its address"),
        "{text}"
    );
}

#[test]
fn a_lookup_under_way_is_reported_as_such() {
    let t0 = Instant::now();
    let e = hosts::parse("a\nb\n", 7610).unwrap();
    let p = Params {
        timeout: Duration::from_secs(5),
        ..params()
    };
    let mut n = Node::new(&e, 0, hosts::fingerprint(&e), 1, 1, p);
    let out = step(&mut n, Input::Start, t0);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Resolve { peer: 2, .. }))
    );
    let text = timed_out_text(&step(&mut n, Input::Tick, t0 + p.timeout));
    assert!(
        text.contains("missing b: address not resolved (lookup under way for 5s)"),
        "{text}"
    );
}

#[test]
fn a_peer_that_passed_the_barrier_without_us_is_named_at_the_timeout() {
    let t0 = Instant::now();
    let p = Params {
        barrier: true,
        timeout: Duration::from_secs(5),
        ..params()
    };
    let fp = hosts::fingerprint(&entries(3));
    let (mut n, _) = node(3, 1, p, t0);
    let mut done = hb(fp, 2, 1, 9, 1);
    done.flags = Flags {
        ready: true,
        done: true,
        barrier: true,
    };
    let out = deliver(&mut n, addr(2), done, t0 + MS);
    assert!(has_event(&out, |e| matches!(
        e,
        Event::PassedWithoutUs { .. }
    )));
    let text = timed_out_text(&step(&mut n, Input::Tick, t0 + p.timeout));
    assert!(
        text.contains("the barrier passed without this process: 127.0.0.1:7002 said"),
        "{text}"
    );
}

#[test]
fn event_texts_read_as_sentences() {
    let a: SocketAddr = "127.0.0.1:7002".parse().unwrap();
    let stats = Stats {
        heartbeats: 1,
        acks: 0,
        received: 2,
        ..Stats::default()
    };
    let ready = Event::Ready {
        after: Duration::from_micros(85),
        stats,
    };
    assert_eq!(
        ready.to_string(),
        "READY after 85us: sent 1 datagram (1 heartbeat, 0 acknowledgements), received 2"
    );
    // The address only where the entry does not say it already.
    let by_address = Event::Mismatch {
        peer: "127.0.0.1:7002".into(),
        from: a,
        what: Mismatch::HostsList,
    };
    assert_eq!(
        by_address.to_string(),
        "127.0.0.1:7002 runs with a different hosts list: every peer must read the same hosts file"
    );
    let by_name = Event::Mismatch {
        peer: "peer2".into(),
        from: a,
        what: Mismatch::Secret(crate::wire::DecodeError::BadMac),
    };
    assert!(
        by_name
            .to_string()
            .starts_with("peer2 (127.0.0.1:7002) fails")
    );
}

fn progress_texts(out: &[Action]) -> Vec<String> {
    out.iter()
        .filter_map(|a| match a {
            Action::Event(e @ Event::Progress { .. }) => Some(e.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn while_waiting_who_is_missing_is_said_every_few_seconds_and_on_request() {
    let t0 = Instant::now();
    let p = Params {
        timeout: Duration::from_secs(60),
        ..params()
    };
    let (mut n, _) = node(20, 1, p, t0);
    // Every deadline up to 21 s: reports at 5, 10, 15 and 20 s.
    let mut reports = Vec::new();
    let mut now = t0;
    while now < t0 + Duration::from_secs(21) {
        now = n.next_deadline().unwrap();
        reports.extend(progress_texts(&step(&mut n, Input::Tick, now)));
    }
    assert_eq!(reports.len(), 4, "{reports:#?}");
    let first = &reports[0];
    assert!(
        first.starts_with("waiting for READY after 5s: 19 of 20 peers missing\nmissing 127.0.0.1:7002: no heartbeat received"),
        "{first}"
    );
    // At most eight peers named, then a count.
    assert_eq!(
        first.lines().filter(|l| l.starts_with("missing ")).count(),
        8
    );
    assert!(first.ends_with("\nand 11 more"), "{first}");
    // On request (SIGUSR1), at once, without stopping anything.
    let out = step(&mut n, Input::Report, now + MS);
    assert_eq!(progress_texts(&out).len(), 1);
    assert!(!n.finished());
}

#[test]
fn progress_stops_at_ready_and_a_request_then_says_ready() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, out) = node(2, 1, params(), t0);
    exchange(&mut n, &out, 2, fp, t0 + MS);
    assert!(matches!(n.state(), State::Ready { .. }));
    let mut now = t0;
    let mut reports = Vec::new();
    while now < t0 + Duration::from_secs(30) {
        now = n.next_deadline().unwrap();
        reports.extend(progress_texts(&step(&mut n, Input::Tick, now)));
    }
    assert!(reports.is_empty(), "{reports:?}");
    let said = progress_texts(&step(&mut n, Input::Report, t0 + Duration::from_secs(31)));
    assert_eq!(said, ["after 31s: READY, 2 peers exchanged"]);
}
