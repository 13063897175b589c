//! Peers listed by name: resolved before they are heartbeated, again when
//! they fall silent or are heard from elsewhere.

use super::*;

#[test]
fn names_are_resolved_and_then_heartbeated() {
    let t0 = Instant::now();
    let e = hosts::parse("peer1\npeer2:9000\n", 7610).unwrap();
    let mut n = Node::new(&e, 0, hosts::fingerprint(&e), 1, 1, params());
    let out = step(&mut n, Input::Start, t0);
    assert_eq!(
        out,
        vec![Action::Resolve {
            peer: 2,
            host: "peer2".into(),
            port: 9000
        }]
    );
    assert_eq!(n.state(), State::Discovering);
    // Failure: retried with backoff, not an error.
    let out = step(
        &mut n,
        Input::Resolved {
            peer: 2,
            result: Err("not known".into()),
        },
        t0 + MS,
    );
    assert!(matches!(
        &out[..],
        [Action::Event(Event::ResolveFailed { first: true, .. })]
    ));
    let retry = n.next_deadline().unwrap();
    assert!(retry > t0 + MS && retry <= t0 + MS + Duration::from_millis(100));
    let out = step(&mut n, Input::Tick, retry);
    assert!(matches!(&out[..], [Action::Resolve { peer: 2, .. }]));
    // The second failure in a row is not news.
    let out = step(
        &mut n,
        Input::Resolved {
            peer: 2,
            result: Err("not known".into()),
        },
        retry,
    );
    assert!(matches!(
        &out[..],
        [Action::Event(Event::ResolveFailed { first: false, .. })]
    ));
    let retry = n.next_deadline().unwrap();
    let out = step(&mut n, Input::Tick, retry);
    assert!(matches!(&out[..], [Action::Resolve { peer: 2, .. }]));
    // Success: heartbeat at once, now Exchanging.
    let at: SocketAddr = "10.1.2.3:9000".parse().unwrap();
    let out = step(
        &mut n,
        Input::Resolved {
            peer: 2,
            result: Ok(vec![at]),
        },
        retry + MS,
    );
    assert_eq!(heartbeats_to(&out, at).len(), 1);
    assert_eq!(n.state(), State::Exchanging);
}

#[test]
fn silence_is_reported_once_and_the_name_resolved_again() {
    let t0 = Instant::now();
    let (mut n, fp) = named_pair(t0);
    let b: SocketAddr = "10.0.0.2:7610".parse().unwrap();
    step(
        &mut n,
        Input::Resolved {
            peer: 2,
            result: Ok(vec![b]),
        },
        t0 + MS,
    );
    deliver(&mut n, b, hb(fp, 2, 1, 5, 1), t0 + 2 * MS);
    let mut now = t0 + 2 * MS;
    let mut silent = 0;
    let mut resolves = 0;
    while now < t0 + params().silent_after() * 2 {
        now = n.next_deadline().unwrap();
        for a in step(&mut n, Input::Tick, now) {
            match a {
                Action::Event(Event::Down { .. }) => silent += 1,
                Action::Resolve { .. } => {
                    resolves += 1;
                    step(
                        &mut n,
                        Input::Resolved {
                            peer: 2,
                            result: Ok(vec![b]),
                        },
                        now,
                    );
                }
                _ => {}
            }
        }
    }
    assert_eq!(silent, 1);
    assert!(resolves >= 1);
}

#[test]
fn a_datagram_from_a_new_address_makes_the_name_resolve_again() {
    let t0 = Instant::now();
    let (mut n, fp) = named_pair(t0);
    let old: SocketAddr = "10.0.0.2:7610".parse().unwrap();
    let new: SocketAddr = "10.0.0.9:7610".parse().unwrap();
    step(
        &mut n,
        Input::Resolved {
            peer: 2,
            result: Ok(vec![old]),
        },
        t0 + MS,
    );
    let at = t0 + Duration::from_secs(1);
    let out = deliver(&mut n, new, hb(fp, 2, 1, 5, 1), at);
    assert!(
        !sends(&out).iter().any(|s| s.1.ack().is_some()),
        "not answered"
    );
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Resolve { peer: 2, .. })),
        "{out:?}"
    );
    let out = step(
        &mut n,
        Input::Resolved {
            peer: 2,
            result: Ok(vec![new]),
        },
        at + MS,
    );
    assert_eq!(
        heartbeats_to(&out, new).len(),
        1,
        "the new address is heartbeated at once"
    );
    let out = deliver(&mut n, new, hb(fp, 2, 1, 5, 2), at + 2 * MS);
    assert!(sends(&out)[0].1.ack().is_some(), "{out:?}");
}

/// A name that resolves again to a list that still holds the address its
/// peer was heard from, in another place, keeps our heartbeats going
/// there: not to the list's first address, nor to what now stands where
/// the old one was.
#[test]
fn a_name_resolved_again_keeps_heartbeating_where_its_peer_was_heard() {
    let t0 = Instant::now();
    let (mut n, fp) = named_pair(t0);
    let [a, b, c, d, e]: [SocketAddr; 5] =
        [1, 2, 3, 4, 5].map(|k| format!("10.0.0.{k}:7610").parse().unwrap());
    let resolved = |n: &mut Node, addrs: Vec<SocketAddr>, at: Instant| {
        step(
            n,
            Input::Resolved {
                peer: 2,
                result: Ok(addrs),
            },
            at,
        )
    };
    let out = resolved(&mut n, vec![a, b], t0 + MS);
    assert_eq!(heartbeats_to(&out, a).len(), 1, "{out:?}");
    let out = deliver(&mut n, b, hb(fp, 2, 1, 5, 1), t0 + 2 * MS);
    assert_eq!(sends(&out).first().map(|s| s.0), Some(b), "{out:?}");
    // From an address not its own: the name is looked up again.
    let at = t0 + Duration::from_secs(1);
    let out = deliver(&mut n, e, hb(fp, 2, 1, 5, 2), at);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Resolve { peer: 2, .. })),
        "{out:?}"
    );
    let out = resolved(&mut n, vec![c, d, b], at + MS);
    assert!(
        sends(&out).is_empty(),
        "not moved: nothing sent anew {out:?}"
    );
    // Our next heartbeat to it, whenever it is due.
    let mut now = at + MS;
    let to = loop {
        assert!(
            now < t0 + Duration::from_secs(10),
            "no heartbeat to the peer"
        );
        now = n.next_deadline().expect("a deadline");
        let out = step(&mut n, Input::Tick, now);
        if let Some((to, _)) = sends(&out)
            .into_iter()
            .find(|s| s.1.kind == Kind::Heartbeat)
        {
            break to;
        }
    };
    assert_eq!(to, b);
}

#[test]
fn two_entries_resolving_to_one_address_are_named() {
    let t0 = Instant::now();
    let e = hosts::parse("me:7001\nb:7002\nc:7002\n", 7610).unwrap();
    let mut n = Node::new(&e, 0, hosts::fingerprint(&e), 1, 1, params());
    step(&mut n, Input::Start, t0);
    let shared: SocketAddr = "10.0.0.9:7002".parse().unwrap();
    step(
        &mut n,
        Input::Resolved {
            peer: 2,
            result: Ok(vec![shared]),
        },
        t0 + MS,
    );
    let out = step(
        &mut n,
        Input::Resolved {
            peer: 3,
            result: Ok(vec![shared]),
        },
        t0 + MS,
    );
    let said: Vec<String> = out
        .iter()
        .filter_map(|a| match a {
            Action::Event(e @ Event::SameAddress { .. }) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        said,
        [
            "b:7002 (line 2) and c:7002 (line 3) both resolve to 10.0.0.9:7002: only one of them can be heard there"
        ]
    );
}

#[test]
fn a_peer_heard_before_its_name_resolves_is_no_warning() {
    // Containers starting together: peer b's heartbeat arrives before
    // its name resolves here. Counted and dropped (its name is looked up
    // at once), never warned about.
    let t0 = Instant::now();
    let (mut n, fp) = named_pair(t0);
    let b: SocketAddr = "10.0.0.2:7610".parse().unwrap();
    let out = deliver(&mut n, b, hb(fp, 2, 1, 5, 1), t0 + MS);
    assert_eq!(n.stats().dropped[Drop::Unresolved.index()], 1);
    assert!(
        !has_event(&out, |e| matches!(e, Event::Dropping { .. })),
        "{out:?}"
    );
}
