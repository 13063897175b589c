//! What a datagram must be to be believed: every other is dropped,
//! counted, warned about within a bound, and answered only within a budget.

use super::*;

#[test]
fn an_acknowledgement_for_another_incarnation_or_unsent_seq_is_dropped() {
    let t0 = Instant::now();
    let (mut n, out) = node(2, 1, params(), t0);
    let ours = heartbeats_to(&out, addr(2))[0];
    let mut stale = ack_of(&ours, 9);
    stale.echo = ours.incarnation - 1;
    deliver(&mut n, addr(2), stale, t0 + MS);
    let mut future = ack_of(&ours, 9);
    future.acked = 99;
    deliver(&mut n, addr(2), future, t0 + MS);
    assert_eq!(n.stats().dropped[Drop::BogusAck.index()], 2);
    let fp = hosts::fingerprint(&entries(2));
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + 2 * MS);
    assert!(!has_ready(&out), "no real acknowledgement yet");
}

#[test]
fn datagrams_that_are_not_believable_are_dropped_and_counted() {
    let t0 = Instant::now();
    let (mut n, _) = node(3, 1, params(), t0);
    let fp = hosts::fingerprint(&entries(3));
    let cases = [
        (
            addr(2),
            Err(crate::wire::DecodeError::Magic),
            Drop::Malformed(crate::wire::DecodeError::Magic),
        ),
        (addr(2), Ok(hb(fp ^ 1, 2, 1, 5, 1)), Drop::HostsMismatch),
        (addr(2), Ok(hb(fp, 2, 3, 5, 1)), Drop::NotForUs),
        (addr(2), Ok(hb(fp, 9, 1, 5, 1)), Drop::UnknownSender),
        (addr(2), Ok(hb(fp, 1, 1, 5, 1)), Drop::UnknownSender),
        (addr(3), Ok(hb(fp, 2, 1, 5, 1)), Drop::WrongAddress),
    ];
    for (from, message, reason) in cases {
        let before = n.stats().dropped[reason.index()];
        let arrived = t0 + MS;
        let out = step(
            &mut n,
            Input::Datagram {
                from,
                message,
                arrived,
            },
            arrived,
        );
        if reason == Drop::HostsMismatch {
            // Its sender learns that we read another list: an
            // acknowledgement with our fingerprint, which nobody answers.
            let answers = sends(&out);
            assert_eq!(answers.len(), 1, "{out:?}");
            assert_eq!((answers[0].1.kind, answers[0].1.hosts), (Kind::Ack, fp));
        } else {
            assert!(sends(&out).is_empty(), "{reason:?}: nothing answered");
        }
        assert!(
            out.contains(&Action::Event(Event::Dropped { reason, from })),
            "{reason:?}: {out:?}"
        );
        assert_eq!(n.stats().dropped[reason.index()], before + 1, "{reason:?}");
    }
    // One rate-limited warning, not one per datagram.
    assert_eq!(n.stats().dropped_total(), 6);
}

#[test]
fn drop_warnings_are_rate_limited() {
    let t0 = Instant::now();
    let (mut n, _) = node(2, 1, params(), t0);
    let mut warnings = 0;
    for k in 0..1000u32 {
        let out = step(
            &mut n,
            Input::Datagram {
                from: addr(9),
                message: Err(crate::wire::DecodeError::Length(3)),
                arrived: t0 + MS * k,
            },
            t0 + MS * k,
        );
        warnings += out
            .iter()
            .filter(|a| matches!(a, Action::Event(Event::Dropping { .. })))
            .count();
    }
    assert_eq!(warnings, 1, "one warning in the first second");
}

#[test]
fn a_peer_with_another_hosts_list_is_named_once_and_reported_at_the_timeout() {
    let t0 = Instant::now();
    let p = Params {
        timeout: Duration::from_secs(3),
        ..params()
    };
    let (mut n, _) = node(2, 1, p, t0);
    let mut named = 0;
    for k in 0..3 {
        let out = deliver(&mut n, addr(2), hb(1234, 2, 1, 5, k + 1), t0 + MS);
        named += out
            .iter()
            .filter(|a| matches!(a, Action::Event(Event::Mismatch { .. })))
            .count();
    }
    assert_eq!(named, 1);
    let out = step(&mut n, Input::Tick, t0 + Duration::from_secs(3));
    let missing = missing_in(&out, false);
    assert_eq!(missing[0].mismatch, Some(Mismatch::HostsList));
    assert!(missing[0].to_string().contains("different hosts list"));
}

#[test]
fn what_a_peers_address_said_is_forgotten_once_its_own_datagrams_come() {
    // Another hosts list from its address, then a datagram claiming to be
    // it from another address: both are what the report would name, until
    // a believable datagram of its own comes. It does not acknowledge, so
    // it is still missing at the timeout, but for nothing of that.
    let t0 = Instant::now();
    let p = Params {
        timeout: Duration::from_secs(3),
        ..params()
    };
    let (mut n, _) = node(2, 1, p, t0);
    let fp = hosts::fingerprint(&entries(2));
    deliver(&mut n, addr(2), hb(1234, 2, 1, 5, 1), t0 + MS);
    deliver(&mut n, addr(9), hb(fp, 2, 1, 5, 2), t0 + MS * 2);
    let before = missing_in(&step(&mut n, Input::Report, t0 + MS * 3), true);
    assert_eq!(before[0].mismatch, Some(Mismatch::HostsList), "{before:?}");
    assert_eq!(before[0].wrong_source, Some(addr(9)), "{before:?}");
    deliver(&mut n, addr(2), hb(fp, 2, 1, 5, 3), t0 + MS * 4);
    let missing = missing_in(
        &step(&mut n, Input::Tick, t0 + Duration::from_secs(3)),
        false,
    );
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].mismatch, None, "{missing:?}");
    assert_eq!(missing[0].wrong_source, None, "{missing:?}");
    assert!(missing[0].heartbeat && !missing[0].ack, "{missing:?}");
}

#[test]
fn ipv4_mapped_sources_match_ipv4_entries() {
    let t0 = Instant::now();
    let (mut n, _) = node(2, 1, params(), t0);
    let fp = hosts::fingerprint(&entries(2));
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:7002".parse().unwrap();
    let out = deliver(&mut n, mapped, hb(fp, 2, 1, 5, 1), t0 + MS);
    assert!(sends(&out)[0].1.ack().is_some(), "{out:?}");
    assert_eq!(n.stats().dropped_total(), 0);
}

#[test]
fn duplicates_and_replays_of_one_incarnation_are_dropped_without_a_warning() {
    let t0 = Instant::now();
    let (mut n, out) = node(2, 1, params(), t0);
    let fp = hosts::fingerprint(&entries(2));
    deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 5), t0 + MS);
    let again = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 5), t0 + 2 * MS);
    let older = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 4), t0 + 3 * MS);
    let ours = heartbeats_to(&out, addr(2))[0];
    deliver(&mut n, addr(2), ack_of(&ours, 9), t0 + 4 * MS);
    let ack_again = deliver(&mut n, addr(2), ack_of(&ours, 9), t0 + 5 * MS);
    assert_eq!(n.stats().dropped[Drop::Replay.index()], 3);
    for out in [again, older, ack_again] {
        assert!(
            !sends(&out).iter().any(|s| s.1.ack().is_some()),
            "not answered"
        );
        assert!(!has_event(&out, |e| matches!(e, Event::Dropping { .. })));
    }
}

#[test]
fn a_peer_with_another_secret_is_named_and_reported_at_the_timeout() {
    use crate::wire::DecodeError;
    let t0 = Instant::now();
    let p = Params {
        timeout: Duration::from_secs(2),
        authenticated: true,
        job: None,
        ..params()
    };
    let (mut n, _) = node(2, 1, p, t0);
    let mut named = Vec::new();
    for k in 0..3u32 {
        let out = step(
            &mut n,
            Input::Datagram {
                from: addr(2),
                message: Err(DecodeError::BadMac),
                arrived: t0 + MS * k,
            },
            t0 + MS * k,
        );
        named.extend(out.into_iter().filter_map(|a| match a {
            Action::Event(e @ Event::Mismatch { .. }) => Some(e.to_string()),
            _ => None,
        }));
    }
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(named[0].contains("127.0.0.1:7002") && named[0].contains("--secret-file"));
    assert_eq!(
        n.stats().dropped[Drop::Unauthentic(DecodeError::BadMac).index()],
        3
    );
    let out = step(&mut n, Input::Tick, t0 + Duration::from_secs(2));
    let report = timed_out_text(&out);
    assert!(report.contains("fails authentication"), "{report}");
}

#[test]
fn alternating_mismatches_are_warned_about_within_a_fixed_bound() {
    let t0 = Instant::now();
    let (mut n, _) = node(3, 1, params(), t0);
    let fp = hosts::fingerprint(&entries(3));
    let mut warnings = 0;
    let mut now = t0;
    // 30 s of alternating bad datagrams from both listed peers.
    for k in 0..30_000u64 {
        now = t0 + MS * k as u32;
        let from = addr(2 + (k % 2) as u16);
        let message = if k % 4 < 2 {
            Ok(hb(fp ^ 1, 2, 1, 5, k + 1))
        } else {
            Err(crate::wire::DecodeError::NoSecret)
        };
        let arrived = now;
        let out = step(
            &mut n,
            Input::Datagram {
                from,
                message,
                arrived,
            },
            now,
        );
        warnings += out
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Event(Event::Mismatch { .. } | Event::Dropping { .. })
                )
            })
            .count();
    }
    // Per 10 s: one drop warning, and at most one mismatch warning for
    // each of the two peers. Never one per datagram.
    assert!(
        warnings <= 3 * 3 + 3,
        "{warnings} warnings in {:?}",
        now - t0
    );
    assert!(warnings >= 3, "{warnings}");
    // The report still names the latest mismatch of each.
    let report = n.missing(false, now);
    assert!(report.iter().all(|m| m.mismatch.is_some()), "{report:?}");
}

#[test]
fn another_family_on_the_listed_port_speaks_for_a_peer_without_a_secret() {
    let t0 = Instant::now();
    let e = hosts::parse("127.0.0.1:7001\n[::1]:7002\n127.0.0.1:7003\n", 7610).unwrap();
    let fp = hosts::fingerprint(&e);
    let mut n = Node::new(&e, 0, fp, 1, 1, params());
    step(&mut n, Input::Start, t0);
    let cases: [(&str, u16, bool); 5] = [
        // Peer 2 is listed by IPv6 only: its IPv4 address on its port is
        // how a dual-stack host reaches our IPv4 address.
        ("127.0.0.1:7002", 2, true),
        ("127.0.0.5:7002", 2, true),
        ("127.0.0.1:7009", 2, false),
        // Peer 3 is listed by IPv4: another IPv4 source is not it.
        ("127.0.0.2:7003", 3, false),
        ("[::1]:7003", 3, true),
    ];
    for (seq, (src, id, believed)) in (1..).zip(cases) {
        let from: SocketAddr = src.parse().unwrap();
        let out = deliver(&mut n, from, hb(fp, id, 1, 9, seq), t0 + MS);
        let acked = sends(&out)
            .iter()
            .any(|(to, m)| *to == from && m.ack().is_some());
        assert_eq!(acked, believed, "{src} for peer {id}: {out:?}");
    }
}

#[test]
fn with_a_secret_any_source_speaks_for_the_peer_its_mac_names() {
    let t0 = Instant::now();
    let p = Params {
        authenticated: true,
        job: None,
        ..params()
    };
    let (mut n, _) = node(2, 1, p, t0);
    let fp = hosts::fingerprint(&entries(2));
    let from: SocketAddr = "127.0.0.2:4444".parse().unwrap();
    let out = deliver(&mut n, from, hb(fp, 2, 1, 9, 1), t0 + MS);
    assert!(
        sends(&out)
            .iter()
            .any(|(to, m)| *to == from && m.ack().is_some())
    );
}

#[test]
fn a_heartbeat_of_another_list_is_answered_within_a_budget() {
    let t0 = Instant::now();
    let (mut n, _) = node(2, 1, params(), t0);
    let fp = hosts::fingerprint(&entries(2));
    let mut answered = 0;
    for k in 0..10_000u64 {
        let out = deliver(&mut n, addr(2), hb(fp ^ 1, 2, 1, 5, k + 1), t0 + MS);
        answered += sends(&out).len();
    }
    assert!(answered > 0 && answered <= 1000, "{answered}");
}

#[test]
fn a_dropped_datagram_changes_nothing_but_a_counter() {
    let t0 = Instant::now();
    let (mut n, out) = node(2, 1, params(), t0);
    let fp = hosts::fingerprint(&entries(2));
    deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + MS);
    // From the peer's own address, a bogus acknowledgement that claims a
    // new incarnation: dropped, and the peer is not taken to have restarted.
    let ours = heartbeats_to(&out, addr(2))[0];
    let mut bogus = ack_of(&ours, 99);
    bogus.echo = 12345;
    let out = deliver(&mut n, addr(2), bogus, t0 + 2 * MS);
    assert!(!has_event(&out, |e| matches!(e, Event::Restarted { .. })));
    assert_eq!(n.stats().dropped[Drop::BogusAck.index()], 1);
    // The real incarnation's next heartbeat is still its own.
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 2), t0 + 3 * MS);
    assert!(!has_event(&out, |e| matches!(e, Event::Restarted { .. })));
    assert!(sends(&out)[0].1.ack().is_some(), "{out:?}");
}

#[test]
fn its_own_heartbeat_under_another_entry_is_a_usage_error_naming_both() {
    let t0 = Instant::now();
    let e = hosts::parse(
        "localhost:7001\n# c\n127.0.0.1:7001\n127.0.0.1:7003\n",
        7610,
    )
    .unwrap();
    let fp = hosts::fingerprint(&e);
    let mut n = Node::new(&e, 0, fp, 42, 1, params());
    let out = step(&mut n, Input::Start, t0);
    // Our heartbeat to entry 2 reaches this very process.
    let (to, ours) = sends(&out).into_iter().find(|(_, m)| m.to == 2).unwrap();
    let out = deliver(&mut n, to, ours, t0 + MS);
    assert_eq!(exit_of(&out), Some(Reason::ListedTwice));
    assert_eq!(Reason::ListedTwice.exit().code(), 2);
    let said = event_text(&out, |e| matches!(e, Event::ListedTwice { .. })).unwrap();
    assert!(
        said.starts_with("localhost:7001 (line 1) and 127.0.0.1:7001 (line 3) are the same peer"),
        "{said}"
    );
    // Another process's heartbeat to entry 2 is merely not for us.
    let (mut n, _) = node(3, 1, params(), t0);
    let other = hb(hosts::fingerprint(&entries(3)), 1, 2, 999, 1);
    let out = deliver(&mut n, addr(1), other, t0 + MS);
    assert_eq!(exit_of(&out), None);
}
