//! The machine alone: hand-made instants, no sockets, no sleeping.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::hosts::{self, Entry};
use crate::wire::{Flags, Kind, Message};

const MS: Duration = Duration::from_millis(1);

fn params() -> Params {
    Params {
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(120),
        barrier: false,
        authenticated: false,
        job: None,
    }
}

fn entries(n: usize) -> Vec<Entry> {
    let text: String = (1..=n)
        .map(|i| format!("127.0.0.1:{}\n", 7000 + i))
        .collect();
    hosts::parse(&text, 7610).unwrap()
}

fn addr(id: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + id))
}

/// Node with entry id `me` (1-based) of `n`, started at `t0`.
fn node(n: usize, me: u16, p: Params, t0: Instant) -> (Node, Vec<Action>) {
    let e = entries(n);
    let mut node = Node::new(
        &e,
        usize::from(me - 1),
        hosts::fingerprint(&e),
        1000 + u64::from(me),
        7,
        p,
    );
    let mut out = Vec::new();
    node.transition(Input::Start, t0, &mut out);
    (node, out)
}

/// Node `a` of the names-only list `a`, `b`, started at `t0`; and the
/// list's fingerprint.
fn named_pair(t0: Instant) -> (Node, u64) {
    let e = hosts::parse("a\nb\n", 7610).unwrap();
    let fp = hosts::fingerprint(&e);
    let mut n = Node::new(&e, 0, fp, 1, 1, params());
    step(&mut n, Input::Start, t0);
    (n, fp)
}

fn sends(actions: &[Action]) -> Vec<(SocketAddr, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, message } => Some((*to, *message)),
            _ => None,
        })
        .collect()
}

fn heartbeats_to(actions: &[Action], to: SocketAddr) -> Vec<Message> {
    sends(actions)
        .into_iter()
        .filter(|(a, m)| *a == to && m.kind == Kind::Heartbeat)
        .map(|(_, m)| m)
        .collect()
}

/// Peer `id` (incarnation 9) exchanges with `n`: its first heartbeat,
/// and its acknowledgement of ours among `started` (the start's actions).
fn exchange(n: &mut Node, started: &[Action], id: u16, fp: u64, now: Instant) {
    let ours = heartbeats_to(started, addr(id))[0];
    deliver(n, addr(id), hb(fp, id, 1, 9, 1), now);
    deliver(n, addr(id), ack_of(&ours, 9), now);
}

/// Ticks `n` through each of its deadlines until it exits: when, and the
/// last transition's actions.
fn run_to_exit(n: &mut Node) -> (Instant, Vec<Action>) {
    loop {
        let now = n.next_deadline().expect("a deadline before the exit");
        let out = step(n, Input::Tick, now);
        if exit_of(&out).is_some() {
            return (now, out);
        }
    }
}

/// An event that `is` came out.
fn has_event(actions: &[Action], is: impl Fn(&Event) -> bool) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Event(e) if is(e)))
}

/// The text of the first event that `is`, if one came out.
fn event_text(actions: &[Action], is: impl Fn(&Event) -> bool) -> Option<String> {
    actions.iter().find_map(|a| match a {
        Action::Event(e) if is(e) => Some(e.to_string()),
        _ => None,
    })
}

/// The peers named missing by the first timeout report or, with
/// `progress`, the first progress report that came out.
fn missing_in(actions: &[Action], progress: bool) -> Vec<Missing> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Event(Event::TimedOut { missing, .. }) if !progress => Some(missing.clone()),
            Action::Event(Event::Progress { missing, .. }) if progress => Some(missing.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no report: {actions:?}"))
}

fn has_ready(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::Ready))
}

fn exit_of(actions: &[Action]) -> Option<Reason> {
    actions.iter().find_map(|a| match a {
        Action::Exit(r) => Some(*r),
        _ => None,
    })
}

fn step(node: &mut Node, input: Input, now: Instant) -> Vec<Action> {
    let mut out = Vec::new();
    node.transition(input, now, &mut out);
    out
}

fn deliver(node: &mut Node, from: SocketAddr, m: Message, now: Instant) -> Vec<Action> {
    step(
        node,
        Input::Datagram {
            from,
            message: Ok(m),
            arrived: now,
        },
        now,
    )
}

/// A heartbeat as peer `from` (incarnation `inc`) would send it to `to`
/// before it has heard `to`: asking for an answer, acknowledging nothing.
fn hb(hosts: u64, from: u16, to: u16, inc: u64, seq: u64) -> Message {
    Message {
        kind: Kind::Heartbeat,
        flags: Flags::default(),
        ask: true,
        hosts,
        from,
        to,
        incarnation: inc,
        seq,
        echo: 0,
        acked: 0,
    }
}

fn ack_of(heartbeat: &Message, inc: u64) -> Message {
    Message {
        kind: Kind::Ack,
        ask: false,
        from: heartbeat.to,
        to: heartbeat.from,
        incarnation: inc,
        seq: 0,
        echo: heartbeat.incarnation,
        acked: heartbeat.seq,
        ..*heartbeat
    }
}

/// A loss-free network of nodes on 127.0.0.1, delivering in order, each
/// datagram `latency` after it was sent.
struct Net {
    nodes: Vec<Option<Node>>,
    queue: VecDeque<(Instant, SocketAddr, SocketAddr, Message)>,
    now: Instant,
    latency: Duration,
    ready_at: Vec<Option<Instant>>,
    exits: Vec<Option<Reason>>,
    sent: Vec<usize>,
    /// Every datagram sent: when, by which node, to which node.
    log: Vec<(Instant, usize, usize, Message)>,
    /// What each node told its command: when, which node, what.
    jobs: Vec<(Instant, usize, Action)>,
    /// Membership events: when, which node, which event, about which
    /// peer (0-based).
    membership: Vec<(Instant, usize, &'static str, usize)>,
    /// Probability that a datagram is lost, and the generator drawing it.
    loss: f64,
    rng: u64,
    /// Links cut: (from, to) pairs whose datagrams are lost.
    cut: Vec<(usize, usize)>,
    /// Nodes stopped (SIGSTOP): the node, and the datagrams waiting in
    /// its socket.
    paused: Vec<Option<(Node, Backlog)>>,
}

/// Datagrams waiting in a stopped node's socket: (source, datagram, when
/// it reached the socket).
type Backlog = Vec<(SocketAddr, Message, Instant)>;

impl Net {
    fn new(n: usize, t0: Instant) -> Net {
        Net {
            nodes: (0..n).map(|_| None).collect(),
            queue: VecDeque::new(),
            now: t0,
            latency: Duration::from_micros(100),
            ready_at: vec![None; n],
            exits: vec![None; n],
            sent: vec![0; n],
            log: Vec::new(),
            jobs: Vec::new(),
            membership: Vec::new(),
            loss: 0.0,
            rng: 1,
            cut: Vec::new(),
            paused: (0..n).map(|_| None).collect(),
        }
    }

    /// `n` nodes, all started at `t0`.
    fn started(n: usize, t0: Instant) -> Net {
        let mut net = Net::new(n, t0);
        for i in 0..n {
            net.start(i, params(), 100 + i as u64);
        }
        net
    }

    /// `n` nodes of which all but the last have run for 10 s, long
    /// enough for their retries to the last to back off to the interval.
    fn all_but_last(n: usize, t0: Instant) -> Net {
        let mut net = Net::new(n, t0);
        for i in 0..n - 1 {
            net.start(i, params(), 100 + i as u64);
        }
        net.run_until(t0 + Duration::from_secs(10));
        net
    }

    /// When the last node announced READY; every node must have.
    fn last_ready(&self) -> Instant {
        self.ready_at
            .iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| panic!("node {i} not READY")))
            .max()
            .expect("nodes")
    }

    /// Asserts that every node announced READY within `bound` of `since`.
    fn assert_all_ready_within(&self, since: Instant, bound: Duration) {
        let ready = self.last_ready();
        assert!(
            ready <= since + bound,
            "the last READY came {:?} after the start, not within {bound:?}",
            ready - since
        );
    }

    fn start(&mut self, i: usize, p: Params, incarnation: u64) {
        let e = entries(self.nodes.len());
        let node = Node::new(&e, i, hosts::fingerprint(&e), incarnation, i as u64, p);
        self.nodes[i] = Some(node);
        self.input(i, Input::Start);
    }

    fn input(&mut self, i: usize, input: Input) {
        let Some(node) = self.nodes[i].as_mut() else {
            if let (
                Some((_, backlog)),
                Input::Datagram {
                    from,
                    message,
                    arrived,
                },
            ) = (self.paused[i].as_mut(), input)
            {
                backlog.extend(message.ok().map(|m| (from, m, arrived)));
            }
            return;
        };
        let mut out = Vec::new();
        node.transition(input, self.now, &mut out);
        for a in out {
            match a {
                Action::Send { to, message } => {
                    self.sent[i] += 1;
                    let j = usize::from(to.port() - 7001);
                    self.log.push((self.now, i, j, message));
                    let lost = (random(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
                    if lost < self.loss || self.cut.contains(&(i, j)) {
                        continue;
                    }
                    self.queue.push_back((
                        self.now + self.latency,
                        addr(i as u16 + 1),
                        to,
                        message,
                    ));
                }
                Action::Ready => {
                    assert!(self.ready_at[i].is_none(), "READY twice");
                    self.ready_at[i] = Some(self.now);
                }
                Action::Exit(r) => self.exits[i] = Some(r),
                a @ (Action::StartJob | Action::SignalJob(_)) => self.jobs.push((self.now, i, a)),
                Action::Event(e) => {
                    let about = match &e {
                        Event::Suspect { peer, .. } => Some(("suspect", peer)),
                        Event::Down { peer, .. } => Some(("down", peer)),
                        Event::Up { peer } => Some(("up", peer)),
                        Event::Restarted { peer } => Some(("restarted", peer)),
                        Event::Left { peer } => Some(("left", peer)),
                        _ => None,
                    };
                    if let Some((what, peer)) = about {
                        let j = usize::from(peer.index) - 1;
                        self.membership.push((self.now, i, what, j));
                    }
                }
                Action::Resolve { .. } => {}
            }
        }
    }

    /// Runs until `until`, delivering datagrams and firing deadlines.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..100_000_000 {
            let next_deadline = self
                .nodes
                .iter()
                .flatten()
                .filter_map(Node::next_deadline)
                .min();
            let next_packet = self.queue.front().map(|q| q.0);
            let next = match (next_deadline, next_packet) {
                (Some(a), Some(b)) => a.min(b),
                (None, None) => until + MS,
                (a, b) => a.or(b).unwrap(),
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            if next_packet == Some(next) {
                let (_, from, to, message) = self.queue.pop_front().unwrap();
                let i = usize::from(to.port() - 7001);
                self.input(
                    i,
                    Input::Datagram {
                        from,
                        message: Ok(message),
                        arrived: self.now,
                    },
                );
            } else {
                for i in 0..self.nodes.len() {
                    let due = self.nodes[i]
                        .as_ref()
                        .and_then(Node::next_deadline)
                        .is_some_and(|d| d <= self.now);
                    if due {
                        self.input(i, Input::Tick);
                    }
                }
            }
        }
        let states: Vec<_> = self
            .nodes
            .iter()
            .flatten()
            .map(|n| (n.state(), n.next_deadline()))
            .collect();
        panic!("the network does not settle at {:?}: {states:?}", self.now);
    }
}

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
fn next_deadline_is_the_earliest_timer() {
    let t0 = Instant::now();
    let (n, _) = node(3, 1, params(), t0);
    let d = n.next_deadline().unwrap();
    assert!(d > t0 && d <= t0 + params().initial_rto());
    let fresh = Node::new(&entries(2), 0, 1, 1, 1, params());
    assert_eq!(fresh.next_deadline(), None, "nothing before Start");
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
fn ready_needs_every_peer_heard_within_the_silence_threshold() {
    let t0 = Instant::now();
    let p = params();
    let fp = hosts::fingerprint(&entries(3));
    let (mut n, out) = node(3, 1, p, t0);
    let to3 = heartbeats_to(&out, addr(3))[0];
    exchange(&mut n, &out, 2, fp, t0 + MS);
    // Peer 2 dies. The README's silence threshold is three intervals.
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

fn timed_out_text(out: &[Action]) -> String {
    event_text(out, |e| matches!(e, Event::TimedOut { .. })).expect("a timeout report")
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

// ---------------------------------------------------------------------------
// Economy: the fewest datagrams the exchange needs, and retries that read
// the situation (README, "Why READY is instant" and "Retransmission").
// ---------------------------------------------------------------------------

/// The datagrams of `net.log` sent in `[from, to]`.
fn sent_between(net: &Net, from: Instant, to: Instant) -> Vec<(Instant, usize, usize, Message)> {
    net.log
        .iter()
        .filter(|(t, ..)| *t >= from && *t <= to)
        .copied()
        .collect()
}

/// Starts nodes `ids` one a millisecond apart.
fn start_one_a_millisecond(net: &mut Net, ids: std::ops::RangeInclusive<usize>) {
    for i in ids {
        net.start(i, params(), 100 + i as u64);
        net.run_until(net.now + MS);
    }
}

/// Asserts that after `after`, `asked` (times of heartbeats to one peer)
/// come no closer than the interval's jitter allows.
fn assert_once_an_interval(asked: &[Instant], after: Instant) {
    for w in asked.windows(2).filter(|w| w[0] >= after) {
        assert!(
            w[1] - w[0] >= params().interval * 3 / 4,
            "asked again {:?} after the last time: {asked:?}",
            w[1] - w[0]
        );
    }
}

/// The questions (heartbeats that ask) node `from` sent node `to` from
/// `since` on: when, and their sequence numbers.
fn questions(net: &Net, from: usize, to: usize, since: Instant) -> Vec<(Instant, u64)> {
    net.log
        .iter()
        .filter(|(t, f, to_, m)| *t >= since && *f == from && *to_ == to && m.ask)
        .map(|(t, _, _, m)| (*t, m.seq))
        .collect()
}

/// When node `from` sent to node `to`.
fn sent_to(net: &Net, from: usize, to: usize) -> Vec<Instant> {
    net.log
        .iter()
        .filter(|(_, f, t, _)| *f == from && *t == to)
        .map(|(t, ..)| *t)
        .collect()
}

#[test]
fn a_peer_never_heard_is_asked_once_an_interval_once_nothing_has_been_lost() {
    // Sixteen peers start and answer node 0's questions: its network loses
    // nothing, so the one it has never heard has not started, and after
    // the first retry (which always goes) is asked once an interval: four
    // times in 5 s, where the quick schedule from 100 ms would ask six
    // times. Its start heartbeats everyone: all READY a round trip later.
    let t0 = Instant::now();
    let mut net = Net::new(18, t0);
    start_one_a_millisecond(&mut net, 0..=16);
    net.run_until(t0 + Duration::from_secs(5));
    let asked = sent_to(&net, 0, 17);
    assert_eq!(asked[0], t0, "{asked:?}");
    assert!(asked.len() <= 4, "{asked:?}");
    assert_once_an_interval(&asked, asked[1]);
    let last_start = net.now;
    net.start(17, params(), 999);
    net.run_until(last_start + Duration::from_millis(5));
    net.assert_all_ready_within(last_start, net.latency * 3);
}

#[test]
fn a_network_seen_to_lose_keeps_the_quick_schedule_for_a_peer_never_heard() {
    // Node 0's answers to node 1 are lost for a while, so its question to
    // a peer that is up goes unanswered and is asked again: its network
    // loses. The seventeen answers that follow, each at the first asking,
    // are more than the sixteen that would otherwise do but fewer than the
    // 32 it now takes, so the peer never heard is still asked on the quick
    // schedule, from 100 ms: at least four times in the first second.
    let t0 = Instant::now();
    let mut net = Net::new(20, t0);
    net.cut.push((0, 1));
    net.start(0, params(), 100);
    net.start(1, params(), 101);
    net.run_until(t0 + Duration::from_millis(30));
    net.cut.clear();
    net.run_until(t0 + Duration::from_millis(100));
    let node = net.nodes[0].as_ref().unwrap();
    assert!(node.peers[0].exchanged());
    assert_eq!(
        node.loss.needed(),
        2 * retransmit::CLEAN_ANSWERS,
        "a loss seen"
    );
    start_one_a_millisecond(&mut net, 2..=18);
    net.run_until(t0 + Duration::from_secs(1));
    let asked = sent_to(&net, 0, 19);
    assert!(asked.len() >= 4, "{asked:?}");
}

#[test]
fn a_retry_answered_by_the_answer_to_the_first_question_is_no_loss() {
    // Sixteen peers start and answer node 0 at the first asking. Then node
    // 1 starts and stops at once, with node 0's question in its socket:
    // node 0 asks again, and node 1, running again, answers the first
    // question. The retry was impatient, nothing was lost: node 0 still
    // takes the peer it never heard for one not started, and asks it once
    // an interval (after its first retry, which went while the late answer
    // had made its round-trip estimate, and with it the time it gives a
    // loss to show, long).
    let t0 = Instant::now();
    let mut net = Net::new(19, t0);
    net.start(0, params(), 100);
    start_one_a_millisecond(&mut net, 2..=17);
    net.run_until(t0 + Duration::from_millis(30));
    let t1 = net.now;
    net.start(1, params(), 101);
    net.run_until(t1 + net.latency * 3 / 2);
    net.pause(1);
    net.run_until(t1 + Duration::from_millis(40));
    net.resume(1);
    net.run_until(t0 + Duration::from_secs(5));
    let asked = questions(&net, 0, 1, t1);
    assert!(asked.len() >= 2, "node 0 did not ask node 1 again");
    let (first, retry) = (asked[0].1, asked[1].0);
    let answered = net
        .log
        .iter()
        .find(|(_, from, to, m)| (*from, *to) == (1, 0) && m.acked == first)
        .map(|(t, ..)| *t);
    assert!(
        answered.is_some_and(|t| t > retry),
        "node 1 did not answer the first question after the retry"
    );
    let asked = sent_to(&net, 0, 18);
    assert!(asked.len() >= 3, "{asked:?}");
    assert_once_an_interval(&asked, t0 + Duration::from_millis(200));
}

#[test]
fn a_first_retry_waits_while_peers_are_still_starting() {
    // Sixteen peers start and answer node 0: its network loses nothing.
    // Then 22 more start 10 ms apart, over 210 ms, longer than a first
    // retry's wait (100 ms): while peers keep starting, one never heard is
    // most likely still to come, so node 0 asks none of them again before
    // it starts. Its start heartbeat is the only datagram each of them was
    // sent before it started (on the quick schedule, those starting after
    // 100 ms would each have cost a retry). The peer that never starts is
    // still asked a first time again once the starts have stopped for that
    // wait (less its jitter), as a newcomer whose start heartbeat was lost
    // would need.
    let t0 = Instant::now();
    let n = 40;
    let mut net = Net::new(n, t0);
    start_one_a_millisecond(&mut net, 0..=16);
    net.run_until(t0 + Duration::from_millis(40));
    assert!(net.nodes[0].as_ref().unwrap().lossless(net.now));
    let mut started = Vec::new();
    for k in 17..n - 1 {
        started.push((k, net.now));
        net.start(k, params(), 100 + k as u64);
        net.run_until(net.now + Duration::from_millis(10));
    }
    let last_start = started.last().unwrap().1;
    for &(k, at) in &started {
        let before: Vec<_> = sent_to(&net, 0, k)
            .into_iter()
            .filter(|&t| t < at)
            .collect();
        assert_eq!(before, [t0], "node 0 to node {k}, started at {at:?}");
    }
    let quiet = params().initial_rto();
    net.run_until(last_start + quiet * 2);
    let never = sent_to(&net, 0, n - 1);
    assert_eq!(never.len(), 2, "{never:?}");
    assert!(never[1] >= last_start + quiet * 3 / 4, "{never:?}");
    assert!(never[1] <= last_start + net.latency + quiet, "{never:?}");
}

#[test]
fn a_newcomer_with_evidence_still_sends_its_first_retry() {
    // Node 18 has run alone for 10 s: it asks the others once an
    // interval. Node 0 starts, its start heartbeat to node 18 is lost,
    // and seventeen peers start after it and answer it: it holds its
    // network for one that loses nothing before its first retry comes
    // due. That first retry goes all the same, once the starts have
    // stopped for its wait, and is what introduces the two: all READY
    // long before node 18's next heartbeat to node 0.
    let t0 = Instant::now();
    let mut net = Net::new(19, t0);
    net.start(18, params(), 999);
    net.run_until(t0 + Duration::from_secs(10));
    let t1 = net.now;
    net.cut.push((0, 18));
    net.start(0, params(), 100);
    net.cut.clear();
    start_one_a_millisecond(&mut net, 1..=17);
    net.run_until(t1 + Duration::from_millis(40));
    assert!(net.nodes[0].as_ref().unwrap().lossless(net.now));
    net.run_until(t1 + Duration::from_millis(400));
    net.assert_all_ready_within(t1, Duration::from_millis(150));
}

#[test]
fn a_newcomer_whose_start_heartbeat_was_lost_asks_again_on_the_quick_schedule() {
    // Nineteen peers have run for 10 s; the twentieth starts, and the link
    // between it and the last of them loses everything for 150 ms: its
    // start heartbeat and its first retry. Eighteen peers answer its start
    // heartbeat, but it had heard none of them before, so their answers
    // say nothing about loss (its questions lost on the way to them would
    // have gone unseen): the one it never heard is asked a second time on
    // the quick schedule, and all are READY well before the interval after
    // which the old peer's own heartbeat would come.
    let t0 = Instant::now();
    let n = 20;
    let mut net = Net::all_but_last(n, t0);
    let start = net.now;
    net.cut.extend([(n - 1, n - 2), (n - 2, n - 1)]);
    net.start(n - 1, params(), 999);
    net.run_until(start + Duration::from_millis(150));
    net.cut.clear();
    assert_eq!(questions(&net, n - 1, n - 2, start).len(), 2);
    net.run_until(start + Duration::from_millis(600));
    net.assert_all_ready_within(start, Duration::from_millis(450));
}

#[test]
fn a_late_starters_exchange_takes_three_datagrams_per_peer() {
    let t0 = Instant::now();
    let n = 8;
    let mut net = Net::all_but_last(n, t0);
    let last_start = net.now;
    net.start(n - 1, params(), 999);
    net.run_until(last_start + Duration::from_millis(5));
    let last_ready = net.last_ready();
    let with_newcomer: Vec<_> = sent_between(&net, last_start, last_ready)
        .into_iter()
        .filter(|&(_, a, b, _)| a == n - 1 || b == n - 1)
        .collect();
    // Its heartbeat, a heartbeat carrying the acknowledgement, the
    // acknowledgement of that: three per peer, none of them a separate
    // acknowledgement of a heartbeat that was answered by one.
    assert_eq!(with_newcomer.len(), 3 * (n - 1), "{with_newcomer:#?}");
    for j in 0..n - 1 {
        let pair: Vec<_> = with_newcomer
            .iter()
            .filter(|&&(_, a, b, _)| a == j || b == j)
            .map(|&(_, a, _, m)| (a, m.ask, m.ack().is_some()))
            .collect();
        assert_eq!(
            pair,
            [(n - 1, true, false), (j, true, true), (n - 1, false, true)],
            "peer {j}"
        );
    }
}

#[test]
fn peers_started_together_exchange_in_four_datagrams_per_pair() {
    let t0 = Instant::now();
    let n = 16;
    let mut net = Net::started(n, t0);
    net.run_until(t0 + Duration::from_millis(5));
    let last_ready = net.last_ready();
    let sent = sent_between(&net, t0, last_ready).len();
    // Both heartbeats cross; each is answered by an acknowledgement that
    // does not ask again, since the question is on its way.
    assert_eq!(sent, 4 * n * (n - 1) / 2);
}

#[test]
fn once_exchanged_a_pair_sends_one_heartbeat_each_way_per_interval_carrying_the_ack() {
    let t0 = Instant::now();
    let n = 5;
    let mut net = Net::started(n, t0);
    net.run_until(t0 + Duration::from_secs(1));
    assert!(net.ready_at.iter().all(Option::is_some));
    let from = net.now;
    let window = params().interval * 20;
    net.run_until(from + window);
    let steady = sent_between(&net, from, from + window);
    for (k, (t, a, b, m)) in steady.iter().enumerate() {
        assert_eq!(m.kind, Kind::Heartbeat, "{t:?} {a}->{b}: {m:?}");
        assert!(!m.ask, "{a}->{b} asks after READY: {m:?}");
        // It acknowledges the latest heartbeat that reached it since its
        // previous one to that peer, and nothing twice.
        let previous = steady[..k]
            .iter()
            .rev()
            .find(|s| s.1 == *a && s.2 == *b)
            .map_or(from, |s| s.0);
        let owed = steady
            .iter()
            .filter(|s| s.1 == *b && s.2 == *a)
            .filter(|s| s.0 + net.latency > previous && s.0 + net.latency <= *t)
            .map(|s| (s.3.incarnation, s.3.seq))
            .next_back();
        if steady[..k].iter().any(|s| s.1 == *a && s.2 == *b) {
            assert_eq!(m.ack(), owed, "{t:?} {a}->{b}: {m:?}");
        }
    }
    // At most one per interval each way (jitter fires up to a quarter early).
    let most = (window.as_secs_f64() / (params().interval.as_secs_f64() * 0.75)).ceil() as usize;
    // And all of a node's heartbeats of an interval leave in one round: one
    // wake-up an interval to send, whatever the number of peers.
    for a in 0..n {
        let mut rounds: Vec<Instant> = steady.iter().filter(|s| s.1 == a).map(|s| s.0).collect();
        rounds.dedup();
        assert!(
            rounds.len() <= most,
            "node {a} sent in {} rounds",
            rounds.len()
        );
    }
    for a in 0..n {
        for b in (0..n).filter(|&b| b != a) {
            let k = steady.iter().filter(|s| s.1 == a && s.2 == b).count();
            assert!((20..=most).contains(&k), "{a}->{b}: {k} in {window:?}");
        }
    }
}

#[test]
fn ready_goes_at_once_only_to_peers_that_wait_for_it() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(3));
    let (mut n, out) = node(3, 1, params(), t0);
    // Peer 2 runs with --barrier, peer 3 without.
    let mut waits = hb(fp, 2, 1, 9, 1);
    waits.flags.barrier = true;
    deliver(&mut n, addr(2), waits, t0 + MS);
    deliver(&mut n, addr(3), hb(fp, 3, 1, 9, 1), t0 + MS);
    let to2 = heartbeats_to(&out, addr(2))[0];
    let to3 = heartbeats_to(&out, addr(3))[0];
    let mut ack2 = ack_of(&to2, 9);
    ack2.flags.barrier = true;
    deliver(&mut n, addr(2), ack2, t0 + 2 * MS);
    let out = deliver(&mut n, addr(3), ack_of(&to3, 9), t0 + 2 * MS);
    assert!(has_ready(&out));
    let now2 = heartbeats_to(&out, addr(2));
    assert_eq!(now2.len(), 1, "{out:?}");
    assert!(now2[0].flags.ready && now2[0].ask);
    assert!(heartbeats_to(&out, addr(3)).is_empty(), "{out:?}");
}

#[test]
fn a_peer_that_was_heard_is_retried_on_the_round_trip_not_the_backoff() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    // Its first heartbeat comes after our start heartbeat was lost; our
    // answer asks for its acknowledgement, and is lost too.
    let at = t0 + Duration::from_millis(60);
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), at);
    assert!(heartbeats_to(&out, addr(2))[0].ask);
    let mut retries = Vec::new();
    while retries.len() < retransmit::FAST_RETRIES as usize {
        let now = n.next_deadline().unwrap();
        if !heartbeats_to(&step(&mut n, Input::Tick, now), addr(2)).is_empty() {
            retries.push(now);
        }
    }
    // Not measured yet: the first retry after the unmeasured timeout,
    // then at most four times that, far below the backoff for peers never
    // heard (which had reached 200 ms by then).
    let cap = retransmit::UNMEASURED_RTO * 4;
    let mut last = at;
    for (k, t) in retries.iter().enumerate() {
        assert!(*t - last <= cap, "retry {k} after {:?}", *t - last);
        last = *t;
    }
    assert!(retries[0] - at <= retransmit::UNMEASURED_RTO);
}

#[test]
fn a_peer_heard_again_after_its_retries_backed_off_is_retried_quickly_again() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    // As above: heard, asked, and every question or answer lost, until
    // the retries have backed off past the quick ones.
    let at = t0 + Duration::from_millis(60);
    deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), at);
    let quick = retransmit::UNMEASURED_RTO * 4;
    let mut last = at;
    let mut backed_off = false;
    while !backed_off {
        let now = n.next_deadline().unwrap();
        assert!(now < at + Duration::from_secs(2), "never backed off");
        if !heartbeats_to(&step(&mut n, Input::Tick, now), addr(2)).is_empty() {
            backed_off = now - last > quick * 4;
            last = now;
        }
    }
    // Its next heartbeat, without the answer, comes long after our last
    // question: it is up, and our question was lost. Asked again at once,
    // and then on the quick schedule, not a backed-off one.
    let heard = last + Duration::from_millis(10);
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 2), heard);
    assert!(
        heartbeats_to(&out, addr(2)).iter().any(|m| m.ask),
        "{out:?}"
    );
    let next = loop {
        let now = n.next_deadline().unwrap();
        assert!(now < heard + Duration::from_secs(2), "never asked again");
        if !heartbeats_to(&step(&mut n, Input::Tick, now), addr(2)).is_empty() {
            break now;
        }
    };
    assert!(
        next - heard <= quick,
        "asked again after {:?}",
        next - heard
    );
}

/// A node of `peers` peers, each of which asks it at once and never hears
/// the answer: the instants of the retries it sends within `window` after
/// that, and to how many peers.
fn paced_retries(peers: usize, window: Duration) -> (Vec<Instant>, usize) {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(peers + 1));
    let (mut n, _) = node(peers + 1, 1, params(), t0);
    let at = t0 + Duration::from_millis(60);
    for id in 2..=(peers as u16 + 1) {
        // Answered at once, unpaced: every answer asks, and all are lost.
        let out = deliver(&mut n, addr(id), hb(fp, id, 1, 9, 1), at);
        assert_eq!(heartbeats_to(&out, addr(id)).len(), 1);
    }
    let mut retries: Vec<Instant> = Vec::new();
    let mut to = std::collections::HashSet::new();
    while let Some(now) = n.next_deadline() {
        if now > at + window {
            break;
        }
        let out = step(&mut n, Input::Tick, now);
        for s in sends(&out) {
            retries.push(now);
            to.insert(s.0);
        }
    }
    (retries, to.len())
}

/// Over any stretch of `retries`: at most a burst plus `rate` a second.
fn assert_paced(retries: &[Instant], rate: f64) {
    use retransmit::RETRANSMIT_BURST;
    for (k, &start) in retries.iter().enumerate() {
        // Sorted: only the last retry within each allowance matters.
        for (m, &end) in retries.iter().enumerate().skip(k) {
            let allowed = f64::from(RETRANSMIT_BURST) + rate * (end - start).as_secs_f64() + 1.0;
            assert!(
                (m - k + 1) as f64 <= allowed,
                "{} retries in {:?}",
                m - k + 1,
                end - start
            );
        }
    }
}

#[test]
fn retransmissions_to_many_peers_are_paced() {
    // 400 peers: the node-wide 1 000 a second (2 a peer would be less).
    let peers = 400;
    let (retries, to) = paced_retries(peers, Duration::from_millis(600));
    assert_paced(&retries, 1000.0);
    assert_eq!(to, peers, "every peer is retried");
}

#[test]
fn the_pacer_grows_with_the_peers() {
    // 2 000 peers: 2 a second per peer, 4 000 a second. At 1 000 a second
    // a round of retries to all of them would take two seconds; at 4 000
    // it takes half of one.
    let peers = 2000;
    let (retries, to) = paced_retries(peers, Duration::from_millis(700));
    assert_paced(&retries, 4000.0);
    assert_eq!(to, peers, "every peer is retried within 0.7 s");
}

#[test]
fn retries_waiting_for_the_pacer_cost_nothing_until_their_turn() {
    // 400 peers owe us an answer at once: the pacer lets out one retry a
    // millisecond. A transition looks at the retries whose turn it is, not
    // at all that wait, so the peers looked at stay within a few per
    // datagram sent (looking at every waiting peer at each token would be
    // about 400 per datagram).
    let t0 = Instant::now();
    let peers = 400;
    let fp = hosts::fingerprint(&entries(peers + 1));
    let (mut n, _) = node(peers + 1, 1, params(), t0);
    let at = t0 + Duration::from_millis(60);
    for id in 2..=(peers as u16 + 1) {
        deliver(&mut n, addr(id), hb(fp, id, 1, 9, 1), at);
    }
    let examined = n.examined;
    let mut sent = 0;
    let mut wakes = 0;
    while let Some(now) = n.next_deadline() {
        if now > at + Duration::from_millis(600) {
            break;
        }
        wakes += 1;
        sent += sends(&step(&mut n, Input::Tick, now)).len() as u64;
    }
    assert!(sent >= peers as u64, "every peer is retried: {sent}");
    let looked = n.examined - examined;
    assert!(
        looked <= 3 * sent,
        "{looked} peers looked at for {sent} datagrams in {wakes} wake-ups"
    );
}

#[test]
fn a_question_taken_for_crossing_is_asked_again_when_its_answer_is_overdue() {
    // We start and ask the peer, which is not up yet (lost); it starts
    // half a millisecond later and asks us. Ours may be crossing its: the
    // answer does not ask again, and ours is asked again only once the
    // answer of a peer that is up is overdue, not when the crossing window
    // closes (a question lost before the peer started is made good by the
    // peer: see the next test).
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    let half = retransmit::UNMEASURED_CROSSING / 2;
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + half);
    let s = heartbeats_to(&out, addr(2));
    assert_eq!(s.len(), 1, "{out:?}");
    assert!(!s[0].ask);
    let next = n.next_deadline().unwrap();
    assert!(
        next >= t0 + retransmit::MIN_RTO,
        "asked again after {:?}",
        next - t0
    );
    let out = step(&mut n, Input::Tick, next);
    let s = heartbeats_to(&out, addr(2));
    assert_eq!(s.len(), 1, "{out:?}");
    assert!(s[0].ask);
}

#[test]
fn crossing_is_judged_by_when_the_datagram_reached_the_socket() {
    // The peer's first heartbeat reached our socket while our start
    // heartbeat could still be crossing it, but we got to it only 30 ms
    // later (a long receive queue, longer than an answer may take): still
    // crossing, so the answer does not ask again, nor does a retry go at
    // once, since our question may have waited as long in the peer's
    // queue.
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    let arrived = t0 + retransmit::UNMEASURED_CROSSING / 2;
    let message = Ok(hb(fp, 2, 1, 9, 1));
    let input = Input::Datagram {
        from: addr(2),
        message,
        arrived,
    };
    let now = t0 + 30 * MS;
    let out = step(&mut n, input, now);
    let s = heartbeats_to(&out, addr(2));
    assert_eq!(s.len(), 1, "{out:?}");
    assert!(!s[0].ask, "{out:?}");
    assert!(n.next_deadline().is_some_and(|t| t > now));
}

#[test]
fn a_heartbeat_from_a_peer_never_acknowledged_is_answered_unasked() {
    // Its heartbeat does not ask (it took its question for crossing ours),
    // but we have never acknowledged it, so it cannot have exchanged with
    // us: answered at once. Acknowledged, a heartbeat that does not ask
    // (and answers ours) waits for our next.
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    // (While our start heartbeat may still be crossing its, so that
    // nothing else makes us send.)
    let mut quiet = hb(fp, 2, 1, 9, 1);
    quiet.ask = false;
    let crossing = t0 + retransmit::UNMEASURED_CROSSING / 2;
    let out = deliver(&mut n, addr(2), quiet, crossing);
    let s = heartbeats_to(&out, addr(2));
    assert_eq!(s.len(), 1, "{out:?}");
    assert_eq!(s[0].ack(), Some((9, 1)));
    assert!(!s[0].ask);
    let mut again = hb(fp, 2, 1, 9, 2);
    again.ask = false;
    again.echo = s[0].incarnation;
    again.acked = s[0].seq;
    let out = deliver(&mut n, addr(2), again, crossing + MS);
    assert!(heartbeats_to(&out, addr(2)).is_empty(), "{out:?}");
}

#[test]
fn a_question_lost_before_the_peer_started_but_taken_for_crossing_costs_no_wait() {
    // Node 1 starts half a crossing window after node 0: node 0's start
    // heartbeat is lost, yet node 0 takes it for crossing node 1's and
    // answers without asking. Node 1, never having acknowledged node 0,
    // acknowledges that answer unasked: both READY one round trip after
    // node 1's start, on four datagrams (the lost one among them).
    let t0 = Instant::now();
    let mut net = Net::new(2, t0);
    net.start(0, params(), 100);
    let later = t0 + retransmit::UNMEASURED_CROSSING / 2;
    net.run_until(later);
    net.start(1, params(), 101);
    net.run_until(later + retransmit::MIN_RTO);
    net.assert_all_ready_within(later, 3 * net.latency);
    assert_eq!(net.sent.iter().sum::<usize>(), 4, "{:?}", net.log);
}

#[test]
fn an_answer_to_an_earlier_question_times_that_question() {
    // A heard peer answers 100 ms late (it is busy): by then we asked
    // again. The answer names the first question, so the round trip
    // measured is 100 ms, not the time since the retry; the next retry
    // waits accordingly.
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    let at = t0 + Duration::from_millis(60);
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), at);
    let first = heartbeats_to(&out, addr(2))[0];
    assert!(first.ask);
    let retry_at = n.next_deadline().unwrap();
    let out = step(&mut n, Input::Tick, retry_at);
    let retry = heartbeats_to(&out, addr(2))[0];
    assert!(retry.ask && retry.seq > first.seq);
    let late = at + Duration::from_millis(100);
    deliver(&mut n, addr(2), ack_of(&first, 9), late);
    let rto = n.peers[0].rtt.timeout().expect("a round trip measured");
    assert!(
        rto >= Duration::from_millis(100),
        "measured {rto:?}: the answer was timed from the retry"
    );
}

fn with_job(exit_on_down: bool) -> Params {
    Params {
        timeout: Duration::from_secs(5),
        job: Some(JobParams { exit_on_down }),
        ..params()
    }
}

#[test]
fn the_command_starts_at_ready_and_outlives_the_timeout() {
    let t0 = Instant::now();
    let p = with_job(false);
    let mut net = Net::new(3, t0);
    for i in 0..3 {
        net.start(i, p, 10 + i as u64);
    }
    net.run_until(t0 + Duration::from_secs(1));
    for i in 0..3 {
        let starts: Vec<_> = net.jobs.iter().filter(|(_, j, _)| *j == i).collect();
        assert_eq!(starts.len(), 1, "node {i}: {starts:?}");
        assert_eq!(starts[0].2, Action::StartJob);
        assert_eq!(
            Some(starts[0].0),
            net.ready_at[i],
            "node {i} starts it at READY"
        );
    }
    // Long past the timeout, the nodes still serve: nobody exits.
    net.run_until(t0 + p.timeout * 3);
    assert!(net.exits.iter().all(Option::is_none), "{:?}", net.exits);
    // The command's end is the node's, with its status, once its leave
    // is acknowledged.
    net.input(0, Input::JobEnded(JobEnd::Exited(3)));
    net.input(1, Input::JobEnded(JobEnd::Killed(9)));
    net.input(2, Input::JobEnded(JobEnd::NotStarted(127)));
    net.run_until(net.now + LEAVE_WAIT);
    assert_eq!(net.exits[0], Some(Reason::JobEnded(JobEnd::Exited(3))));
    assert_eq!(net.exits[0].unwrap().exit().code(), 3);
    assert_eq!(net.exits[1].unwrap().exit().code(), 137);
    assert_eq!(net.exits[2].unwrap().exit().code(), 127);
}

#[test]
fn with_barrier_the_command_starts_once_every_peer_is_ready() {
    let t0 = Instant::now();
    let p = Params {
        barrier: true,
        ..with_job(false)
    };
    let mut net = Net::new(3, t0);
    net.start(0, p, 10);
    net.start(1, p, 11);
    net.run_until(t0 + Duration::from_secs(1));
    assert!(net.jobs.is_empty(), "{:?}", net.jobs);
    let last = net.now;
    net.start(2, p, 12);
    net.run_until(last + Duration::from_secs(1));
    let started: Vec<usize> = net.jobs.iter().map(|(_, i, _)| *i).collect();
    assert_eq!(started.len(), 3, "{:?}", net.jobs);
    for (at, i, _) in &net.jobs {
        assert!(
            *at >= net.last_ready(),
            "node {i} started before every READY"
        );
    }
    net.run_until(last + p.timeout * 3);
    assert!(net.exits.iter().all(Option::is_none), "{:?}", net.exits);
}

#[test]
fn a_stop_signal_goes_to_the_command_and_its_end_is_the_exit() {
    let t0 = Instant::now();
    let (mut n, out) = node(1, 1, with_job(false), t0);
    assert!(out.contains(&Action::StartJob));
    let out = step(&mut n, Input::Stop(Stop::TERMINATE), t0 + MS);
    assert!(out.contains(&Action::SignalJob(15)), "{out:?}");
    assert_eq!(exit_of(&out), None, "the node waits for the command");
    let out = step(&mut n, Input::Stop(Stop::INTERRUPT), t0 + 2 * MS);
    assert!(out.contains(&Action::SignalJob(2)), "{out:?}");
    let out = step(&mut n, Input::JobEnded(JobEnd::Killed(15)), t0 + 3 * MS);
    assert_eq!(exit_of(&out).map(|r| r.exit().code()), Some(143));
    // Before the command starts, a signal stops the node as ever.
    let (mut n, _) = node(2, 1, with_job(false), t0);
    let out = step(&mut n, Input::Stop(Stop::TERMINATE), t0 + MS);
    assert!(!out.iter().any(|a| matches!(a, Action::SignalJob(_))));
    assert_eq!(exit_of(&out).map(|r| r.exit().code()), Some(143));
}

#[test]
fn a_leave_carrying_the_last_acknowledgement_completes_the_exchange() {
    // Peer 2 became READY and left at once (its command exited): its
    // acknowledgement of our heartbeat rode on its leave.
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, started) = node(2, 1, params(), t0);
    let ours = heartbeats_to(&started, addr(2))[0];
    deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + MS);
    let leave = Message {
        kind: Kind::Leave,
        ask: false,
        flags: Flags {
            ready: true,
            ..Flags::default()
        },
        seq: 2,
        ..ack_of(&ours, 9)
    };
    let out = deliver(&mut n, addr(2), leave, t0 + 2 * MS);
    assert!(
        has_event(&out, |e| matches!(e, Event::Exchanged { .. })),
        "{out:?}"
    );
    assert!(
        has_event(&out, |e| matches!(e, Event::Left { .. })),
        "{out:?}"
    );
    assert!(has_ready(&out), "{out:?}");
    // A leave acknowledging a heartbeat never sent is dropped.
    let (mut n, _) = node(2, 1, params(), t0);
    deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + MS);
    let bogus = Message {
        acked: 999,
        ..leave
    };
    let out = deliver(&mut n, addr(2), bogus, t0 + 2 * MS);
    assert!(!has_ready(&out), "{out:?}");
    assert!(!has_event(&out, |e| matches!(e, Event::Left { .. })));
}

#[test]
fn signals_are_named_by_linux_numbers() {
    // signal(7), the x86/Arm column.
    let names = [
        (1, "SIGHUP"),
        (2, "SIGINT"),
        (6, "SIGABRT"),
        (9, "SIGKILL"),
        (11, "SIGSEGV"),
        (13, "SIGPIPE"),
        (15, "SIGTERM"),
        (17, "SIGCHLD"),
        (19, "SIGSTOP"),
        (28, "SIGWINCH"),
        (31, "SIGSYS"),
    ];
    for (n, name) in names {
        assert_eq!(Stop(n).name(), name);
    }
    assert_eq!(Stop(0).name(), "signal 0");
    assert_eq!(Stop(34).name(), "signal 34");
}

#[test]
fn listed_twice_while_the_command_runs_stops_it_and_then_exits_2() {
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, started) = node(2, 1, with_job(false), t0);
    let ours = heartbeats_to(&started, addr(2))[0];
    let mut out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), t0 + MS);
    out.extend(deliver(&mut n, addr(2), ack_of(&ours, 9), t0 + MS));
    assert!(out.contains(&Action::StartJob), "{out:?}");
    // Our own heartbeat to entry 2 comes back to us: entry 2 is this
    // process too (its name now resolves to our address).
    let listed_twice = |a: &Action| matches!(a, Action::Event(Event::ListedTwice { .. }));
    let out = deliver(&mut n, addr(1), ours, t0 + 2 * MS);
    assert_eq!(out.iter().filter(|a| listed_twice(a)).count(), 1, "{out:?}");
    assert!(out.contains(&Action::SignalJob(15)), "{out:?}");
    assert_eq!(exit_of(&out), None, "the node waits for the command");
    // Said once, signalled once.
    let out = deliver(&mut n, addr(1), ours, t0 + 3 * MS);
    assert!(
        !out.iter()
            .any(|a| listed_twice(a) || matches!(a, Action::SignalJob(_)))
    );
    let mut out = step(&mut n, Input::JobEnded(JobEnd::Killed(15)), t0 + 4 * MS);
    if exit_of(&out).is_none() {
        out = run_to_exit(&mut n).1;
    }
    assert_eq!(exit_of(&out), Some(Reason::ListedTwice));
    assert_eq!(Reason::ListedTwice.exit().code(), 2);
}

// ---------------------------------------------------------------------
// Membership: the exact events each node reports about a peer that is
// killed, stopped, restarted, partitioned away or behind a one-way link.
// ---------------------------------------------------------------------

fn at_one_second() -> Params {
    Params {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(100_000),
        ..params()
    }
}

/// `n` nodes at `-i 1s`, all started at `t0` and READY.
fn ready_cluster(n: usize, t0: Instant) -> Net {
    let mut net = Net::new(n, t0);
    for i in 0..n {
        net.start(i, at_one_second(), 100 + i as u64);
    }
    net.run_until(t0 + Duration::from_secs(3));
    net.last_ready();
    net
}

impl Net {
    /// What node `i` reported about peer `j`, in order.
    fn about(&self, i: usize, j: usize) -> Vec<&'static str> {
        self.membership
            .iter()
            .filter(|(_, from, _, to)| *from == i && *to == j)
            .map(|(_, _, what, _)| *what)
            .collect()
    }

    /// When node `i` first reported `what` about peer `j`.
    fn when(&self, i: usize, what: &str, j: usize) -> Option<Instant> {
        self.membership
            .iter()
            .find(|(_, from, w, to)| *from == i && *w == what && *to == j)
            .map(|(t, ..)| *t)
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        self.ready_at[i] = None;
    }

    /// Node `i` stops (SIGSTOP): it runs no timer and reads nothing, and
    /// what is sent to it waits in its socket.
    fn pause(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("running");
        self.paused[i] = Some((node, Vec::new()));
    }

    /// Node `i` runs again (SIGCONT): its timers first, as a loop woken
    /// late finds them, then what waits in its socket.
    fn resume(&mut self, i: usize) {
        let (node, backlog) = self.paused[i].take().expect("paused");
        self.nodes[i] = Some(node);
        self.input(i, Input::Tick);
        for (from, message, arrived) in backlog {
            let message = Ok(message);
            let input = Input::Datagram {
                from,
                message,
                arrived,
            };
            self.input(i, input);
        }
    }
}

#[test]
fn a_node_stopped_for_seconds_accuses_nobody_when_it_runs_again() {
    // Every threshold of every peer is long past when node 0 runs again,
    // and its socket holds their heartbeats: it must probe and read them
    // before accusing anyone. The others, which did not hear it, report
    // it suspect, down and then up.
    let t0 = Instant::now();
    let mut net = ready_cluster(4, t0);
    let stop = net.now;
    net.pause(0);
    net.run_until(stop + Duration::from_secs(5));
    net.resume(0);
    net.run_until(stop + Duration::from_secs(15));
    for j in 1..4 {
        assert!(
            net.about(0, j).is_empty(),
            "0 about {j}: {:?}",
            net.about(0, j)
        );
        assert_eq!(net.about(j, 0), ["suspect", "down", "up"], "{j} about 0");
    }
}

#[test]
fn a_killed_peer_is_suspect_then_down_at_every_other_within_3_s() {
    let t0 = Instant::now();
    let mut net = ready_cluster(5, t0);
    let kill = net.now;
    net.crash(4);
    net.run_until(kill + Duration::from_secs(10));
    for i in 0..4 {
        assert_eq!(net.about(i, 4), ["suspect", "down"], "node {i}");
        let down = net.when(i, "down", 4).unwrap() - kill;
        assert!(
            down <= Duration::from_secs(3),
            "node {i}: down after {down:?}"
        );
        for j in (0..4).filter(|&j| j != i) {
            assert!(net.about(i, j).is_empty(), "node {i} about {j}");
        }
    }
}

#[test]
fn a_stopped_peer_leaves_and_is_reported_left_within_a_second() {
    let t0 = Instant::now();
    let mut net = ready_cluster(4, t0);
    let stop = net.now;
    net.input(3, Input::Stop(Stop::TERMINATE));
    net.run_until(stop + Duration::from_secs(1));
    assert_eq!(net.exits[3], Some(Reason::Stopped(Stop::TERMINATE)));
    for i in 0..3 {
        assert_eq!(net.about(i, 3), ["left"], "node {i}");
    }
    net.crash(3);
    net.run_until(stop + Duration::from_secs(10));
    for i in 0..3 {
        assert_eq!(net.about(i, 3), ["left"], "node {i}: nothing after left");
    }
    // It comes back: a new incarnation, then up; READY again.
    let back = net.now;
    net.start(3, at_one_second(), 900);
    net.run_until(back + Duration::from_secs(1));
    for i in 0..3 {
        assert_eq!(net.about(i, 3), ["left", "restarted", "up"], "node {i}");
    }
    assert!(net.ready_at[3].is_some());
}

#[test]
fn a_leave_waits_for_every_acknowledgement_or_200_ms_at_most() {
    let t0 = Instant::now();
    let mut net = ready_cluster(3, t0);
    // Nothing reaches node 1 any more: node 0's leave is never
    // acknowledged by it, and node 0 goes at the end of the wait.
    net.cut.extend([(0, 1), (2, 1)]);
    let stop = net.now;
    net.input(0, Input::Stop(Stop::INTERRUPT));
    net.run_until(stop + LEAVE_WAIT - MS);
    assert_eq!(net.exits[0], None, "gone before the wait was over");
    net.run_until(stop + LEAVE_WAIT + MS);
    assert_eq!(net.exits[0], Some(Reason::Stopped(Stop::INTERRUPT)));
    assert_eq!(net.about(2, 0), ["left"]);
}

#[test]
fn a_killed_peer_that_restarts_is_restarted_then_up() {
    let t0 = Instant::now();
    let mut net = ready_cluster(3, t0);
    let kill = net.now;
    net.crash(2);
    net.run_until(kill + Duration::from_secs(5));
    net.start(2, at_one_second(), 500);
    net.run_until(kill + Duration::from_secs(6));
    for i in 0..2 {
        assert_eq!(
            net.about(i, 2),
            ["suspect", "down", "restarted", "up"],
            "node {i}"
        );
    }
    assert!(net.ready_at[2].is_some());
}

#[test]
fn a_partition_is_down_on_both_sides_and_up_once_healed() {
    let t0 = Instant::now();
    let mut net = ready_cluster(4, t0);
    let sides = [[0, 1], [2, 3]];
    for &a in &sides[0] {
        for &b in &sides[1] {
            net.cut.extend([(a, b), (b, a)]);
        }
    }
    let cut = net.now;
    net.run_until(cut + Duration::from_secs(5));
    net.cut.clear();
    net.run_until(cut + Duration::from_secs(7));
    for (side, other) in [(sides[0], sides[1]), (sides[1], sides[0])] {
        for &i in &side {
            for &j in &other {
                assert_eq!(net.about(i, j), ["suspect", "down", "up"], "{i} about {j}");
            }
            for &j in side.iter().filter(|&&j| j != i) {
                assert!(net.about(i, j).is_empty(), "{i} about {j}");
            }
        }
    }
}

#[test]
fn a_peer_behind_a_one_way_link_is_vouched_for_by_the_others() {
    // Node 3's datagrams never reach node 0, though node 0's reach node 3
    // and everyone else hears both: node 0 asks the others to probe node
    // 3, which answers them, and never takes it for suspect or down.
    let t0 = Instant::now();
    let mut net = ready_cluster(4, t0);
    net.cut.push((3, 0));
    net.run_until(net.now + Duration::from_secs(60));
    for i in 0..4 {
        for j in (0..4).filter(|&j| j != i) {
            assert!(
                net.about(i, j).is_empty(),
                "{i} about {j}: {:?}",
                net.about(i, j)
            );
        }
    }
}

/// 16 nodes at `-i 1s` under `loss` for `seconds` of simulated time:
/// (suspects, downs, ups) reported about live peers.
fn false_positives(loss: f64, seconds: u64, seed: u64) -> (usize, usize, usize) {
    let t0 = Instant::now();
    let mut net = Net::new(16, t0);
    net.loss = loss;
    net.rng = seed;
    for i in 0..16 {
        net.start(i, at_one_second(), 100 + i as u64);
    }
    net.run_until(t0 + Duration::from_secs(30));
    net.last_ready();
    net.membership.clear();
    net.run_until(t0 + Duration::from_secs(30 + seconds));
    let count = |what: &str| net.membership.iter().filter(|m| m.2 == what).count();
    (count("suspect"), count("down"), count("up"))
}

#[test]
fn in_an_hour_under_20_percent_loss_no_live_peer_is_taken_for_down() {
    // 16 peers, one heartbeat a second: an hour holds about 860 000
    // arrivals per direction of loss, and a passive timeout of 2.5
    // intervals alone takes live peers for down thousands of times.
    let (suspects, downs, ups) = false_positives(0.2, 3600, 11);
    println!("DETECT loss=20 peers=16 seconds=3600 suspect={suspects} down={downs} up={ups}");
    assert_eq!(downs, 0, "{suspects} suspect, {downs} down, {ups} up");
}

#[test]
fn detection_time_over_many_kills_stays_within_3_s() {
    // Kills at every phase of the heartbeat rounds: the time from the kill
    // to each other node's `down`, over 20 kills.
    let t0 = Instant::now();
    let mut times = Vec::new();
    for k in 0..20u64 {
        let mut net = ready_cluster(5, t0);
        net.run_until(net.now + Duration::from_millis(47 * k));
        let kill = net.now;
        net.crash(4);
        net.run_until(kill + Duration::from_secs(5));
        for i in 0..4 {
            let down = net.when(i, "down", 4).expect("reported down") - kill;
            times.push(down);
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = *times.last().unwrap();
    println!(
        "DETECT interval=1s kills=20 median_ms={} max_ms={}",
        median.as_millis(),
        max.as_millis()
    );
    assert!(max <= Duration::from_secs(3), "max {max:?}");
}

#[test]
fn the_ready_line_tells_retries_and_steady_heartbeats_apart() {
    // Peer 2 has not started: our first heartbeat is lost and asked again
    // twice, to a peer not heard. Then it starts, and its heartbeat
    // arrives: our answer asks its new incarnation, which none of our
    // questions reached, a first question and not a retry. That answer is
    // lost too, and asked again: a retry to a peer heard. Its answer
    // makes us READY; the next round's heartbeat to it is a steady one.
    let t0 = Instant::now();
    let fp = hosts::fingerprint(&entries(2));
    let (mut n, _) = node(2, 1, params(), t0);
    let mut now = t0;
    for _ in 0..2 {
        now = n.next_deadline().unwrap();
        let out = step(&mut n, Input::Tick, now);
        assert!(heartbeats_to(&out, addr(2))[0].ask, "{out:?}");
    }
    let s = n.stats();
    assert_eq!(
        (s.heartbeats, s.retries, s.retries_unheard, s.steady),
        (3, 2, 2, 0)
    );
    now += Duration::from_millis(50);
    let out = deliver(&mut n, addr(2), hb(fp, 2, 1, 9, 1), now);
    let first = heartbeats_to(&out, addr(2));
    assert!(
        first.len() == 1 && first[0].ask && first[0].acked == 1,
        "{out:?}"
    );
    assert_eq!(
        n.stats().retries,
        2,
        "a first question to the new incarnation"
    );
    now = n.next_deadline().unwrap();
    let out = step(&mut n, Input::Tick, now);
    let again = heartbeats_to(&out, addr(2));
    assert!(again.len() == 1 && again[0].ask, "{out:?}");
    let out = deliver(
        &mut n,
        addr(2),
        ack_of(&again[0], 9),
        now + Duration::from_millis(1),
    );
    let ready = event_text(&out, |e| matches!(e, Event::Ready { .. })).expect("READY");
    assert!(
        ready.ends_with(
            "; of the heartbeats, 0 steady at the interval, 3 asked again (2 of peers not heard)"
        ),
        "{ready}"
    );
    let round = n.next_deadline().unwrap();
    let out = step(&mut n, Input::Tick, round);
    let steady = heartbeats_to(&out, addr(2));
    assert!(steady.len() == 1 && !steady[0].ask, "{out:?}");
    let s = n.stats();
    assert_eq!(
        (s.heartbeats, s.retries, s.retries_unheard, s.steady),
        (6, 3, 2, 1)
    );
}
