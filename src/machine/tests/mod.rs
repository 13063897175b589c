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

fn timed_out_text(out: &[Action]) -> String {
    event_text(out, |e| matches!(e, Event::TimedOut { .. })).expect("a timeout report")
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

/// `m` made the leave of a peer that was READY: what a peer sends when its
/// timeout runs out or its command ends.
fn ready_leave(m: Message) -> Message {
    Message {
        kind: Kind::Leave,
        ask: false,
        flags: Flags {
            ready: true,
            ..Flags::default()
        },
        ..m
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

mod economy;
mod exchange;
mod incarnations;
mod input;
mod job;
mod lifecycle;
mod membership;
mod names;
mod reports;
