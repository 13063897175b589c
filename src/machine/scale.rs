//! The machine at scale: a thousand nodes starting within a second, on a
//! network whose hosts each have a receive queue of bounded capacity and
//! spend time on every datagram, so that a protocol that sends too much
//! shows it as queue overflows and delay (congestion), not just as counts.
//!
//! Leaner than the simulator in `sim.rs` (no faults, no wire encoding, no
//! per-pair oracles): what it checks is that every node becomes READY, how
//! soon after the last start, and how many datagrams that took against
//! the protocol's minimum (3 per pair: a heartbeat, a heartbeat carrying
//! the acknowledgement, the acknowledgement of that). `make bench` reads
//! the `SIM ...` lines it prints.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::hosts;
use crate::wire::Message;

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Scale {
    pub peers: usize,
    pub seed: u64,
    /// Probability that a datagram is lost on the way.
    pub loss: f64,
    /// Nodes start at times drawn uniformly from `[0, spread)`.
    pub spread: Duration,
    pub interval: Duration,
    /// One-way delay of every datagram.
    pub latency: Duration,
    /// Datagrams a host's receive queue holds; more are dropped.
    pub queue: usize,
    /// Time a host spends on each datagram it receives.
    pub cost: Duration,
}

impl Scale {
    pub fn new(peers: usize, seed: u64, loss: f64) -> Scale {
        Scale {
            peers,
            seed,
            loss,
            spread: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            latency: Duration::from_micros(100),
            // A socket buffer of 4 KiB per peer, as rollcall asks for, at
            // about 768 bytes of kernel memory per small datagram.
            queue: peers * 4096 / 768,
            cost: Duration::from_micros(5),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Nodes that announced READY.
    pub ready: usize,
    /// From the last start to the last READY.
    pub last_ready_after_last_start: Option<Duration>,
    /// Datagrams sent by all nodes until the last READY.
    pub datagrams: u64,
    /// The protocol's minimum: 3 per pair.
    pub minimum: u64,
    /// Datagrams dropped because a receive queue was full.
    pub overflows: u64,
    pub lost: u64,
    /// What the first nodes not READY (if any) report missing.
    pub not_ready: Vec<String>,
    /// The nodes' counters added up, at the end of the run.
    pub stats: Stats,
}

enum What {
    Start(usize),
    /// A datagram reaches host `to`'s queue.
    Arrive {
        to: usize,
        from: usize,
        m: Message,
    },
    /// Host `to` has worked through its queue up to this datagram, which
    /// reached the queue at `arrived`.
    Process {
        to: usize,
        from: usize,
        m: Message,
        arrived: Instant,
    },
    /// A node's deadline, valid if it is still the node's deadline.
    Wake(usize),
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16))
}

/// Runs `s` until every node is READY or `limit` after the last start.
pub fn run(s: &Scale, limit: Duration) -> Outcome {
    let text: String = (0..s.peers)
        .map(|i| format!("127.0.0.1:{}\n", 10_000 + i))
        .collect();
    let entries = hosts::parse(&text, 7610).expect("generated hosts list");
    let fp = hosts::fingerprint(&entries);
    // One record of each entry for all the nodes, as one process has.
    let listed: Vec<Arc<Listed>> = entries.iter().map(|e| Arc::new(Listed::new(e))).collect();
    let params = Params {
        interval: s.interval,
        timeout: Duration::from_secs(3600),
        barrier: false,
        authenticated: false,
        job: None,
    };
    let t0 = Instant::now();
    let mut rng = s.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut nodes: Vec<Option<Node>> = (0..s.peers).map(|_| None).collect();
    let mut deadline: Vec<Option<Instant>> = vec![None; s.peers];
    let mut busy_until = vec![t0; s.peers];
    let mut queued = vec![0usize; s.peers];
    let mut events = Events::default();
    let mut last_start = t0;
    for i in 0..s.peers {
        let start = t0 + s.spread.mul_f64(uniform(&mut rng));
        last_start = last_start.max(start);
        events.at(start, What::Start(i));
    }
    let end = last_start + limit;
    let mut out = Vec::new();
    let mut o = Outcome {
        ready: 0,
        last_ready_after_last_start: None,
        datagrams: 0,
        minimum: 3 * (s.peers * (s.peers - 1) / 2) as u64,
        overflows: 0,
        lost: 0,
        not_ready: Vec::new(),
        stats: Stats::default(),
    };
    let mut sent = 0u64;
    while let Some((now, what)) = events.pop() {
        if now > end || o.ready == s.peers {
            break;
        }
        let (i, input) = match what {
            What::Start(i) => {
                nodes[i] = Some(Node::listing(
                    &listed,
                    i,
                    fp,
                    1_000 + i as u64,
                    rng ^ i as u64,
                    params,
                ));
                (i, Input::Start)
            }
            What::Arrive { to, from, m } => {
                if queued[to] >= s.queue {
                    o.overflows += 1;
                    continue;
                }
                queued[to] += 1;
                let done = busy_until[to].max(now) + s.cost;
                busy_until[to] = done;
                events.at(
                    done,
                    What::Process {
                        to,
                        from,
                        m,
                        arrived: now,
                    },
                );
                continue;
            }
            What::Process {
                to,
                from,
                m,
                arrived,
            } => {
                queued[to] -= 1;
                let input = Input::Datagram {
                    from: addr(from),
                    message: Ok(m),
                    arrived,
                };
                (to, input)
            }
            What::Wake(i) => {
                if deadline[i] != Some(now) {
                    continue;
                }
                // Taken: whatever the node's next deadline, it needs a
                // wake-up of its own.
                deadline[i] = None;
                (i, Input::Tick)
            }
        };
        let Some(node) = nodes[i].as_mut() else {
            continue; // not started: what reaches its port is lost
        };
        out.clear();
        node.transition(input, now, &mut out);
        for a in out.drain(..) {
            match a {
                Action::Send { to, message } => {
                    sent += 1;
                    if uniform(&mut rng) < s.loss {
                        o.lost += 1;
                        continue;
                    }
                    let j = usize::from(to.port() - 10_000);
                    events.at(
                        now + s.latency,
                        What::Arrive {
                            to: j,
                            from: i,
                            m: message,
                        },
                    );
                }
                Action::Ready => {
                    o.ready += 1;
                    o.datagrams = sent;
                    o.last_ready_after_last_start = Some(now.saturating_duration_since(last_start));
                }
                Action::Resolve { .. }
                | Action::Event(_)
                | Action::Exit(_)
                | Action::StartJob
                | Action::SignalJob(_) => {}
            }
        }
        let next = node.next_deadline();
        if next != deadline[i] {
            deadline[i] = next;
            if let Some(t) = next {
                events.at(t, What::Wake(i));
            }
        }
    }
    for node in nodes.iter().flatten() {
        o.stats += node.stats();
    }
    // What the first few nodes not READY say they miss, for a failure.
    for (i, node) in nodes.iter_mut().enumerate() {
        if o.not_ready.len() == 3 {
            break;
        }
        if let Some(node) = node
            && !matches!(node.state(), State::Ready { .. })
        {
            out.clear();
            node.transition(Input::Report, end, &mut out);
            for a in &out {
                if let Action::Event(e) = a {
                    o.not_ready.push(format!("node {i}: {e}"));
                }
            }
        }
    }
    o
}

/// The events to come, earliest first and, at one instant, in the order
/// they were scheduled. What they carry waits in slots that are used
/// again once their event has come, so that memory follows the events
/// pending, not all the events of the run (hundreds of millions at a few
/// thousand nodes).
#[derive(Default)]
struct Events {
    /// (when, order of scheduling, slot).
    heap: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    slots: Vec<Option<What>>,
    free: Vec<u32>,
    scheduled: u64,
}

impl Events {
    /// Schedules `w` at `t`.
    fn at(&mut self, t: Instant, w: What) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(w);
                slot
            }
            None => {
                self.slots.push(Some(w));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 events pending")
            }
        };
        self.heap.push(Reverse((t, self.scheduled, slot)));
        self.scheduled += 1;
    }

    fn pop(&mut self) -> Option<(Instant, What)> {
        let Reverse((t, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        let w = self.slots[slot as usize].take().expect("each event once");
        Some((t, w))
    }
}

/// A number in [0, 1) from the run's generator.
fn uniform(state: &mut u64) -> f64 {
    (random(state) >> 11) as f64 / (1u64 << 53) as f64
}

/// The line `make bench` reads.
pub fn summary(s: &Scale, o: &Outcome) -> String {
    format!(
        "SIM peers={} loss={} ready_ms={:.1} datagrams={} minimum={} ready={} overflows={} seed={} spread_ms={} retries={} retries_unheard={} steady={}",
        s.peers,
        (s.loss * 100.0).round(),
        o.last_ready_after_last_start
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        o.datagrams,
        o.minimum,
        o.ready,
        o.overflows,
        s.seed,
        s.spread.as_secs_f64() * 1000.0,
        o.stats.retries,
        o.stats.retries_unheard,
        o.stats.steady,
    )
}

fn all_ready_within(peers: usize, loss: f64, seed: u64, bound: Duration) -> Outcome {
    let s = Scale::new(peers, seed, loss);
    let o = run(&s, bound);
    println!("{}", summary(&s, &o));
    assert_eq!(
        o.ready, peers,
        "{} of {peers} READY within {bound:?} of the last start: {o:?}",
        o.ready
    );
    o
}

/// A thousand nodes starting within a second, no loss: every node READY
/// within one interval of the last start (the promise is a round trip;
/// the bound leaves room for the queues).
#[test]
fn a_thousand_nodes_become_ready() {
    all_ready_within(1000, 0.0, 1, Duration::from_secs(1));
}

/// The same with 20% of datagrams lost: retries on the round trip, so
/// still within an interval or two.
#[test]
fn a_thousand_nodes_become_ready_under_loss() {
    all_ready_within(1000, 0.2, 2, Duration::from_secs(5));
}

/// Started at the same instant, every pair's first heartbeats cross: each
/// side then acknowledges the other's, 4 datagrams a pair, and nothing
/// more, though the first heartbeats wait in the receive queues longer
/// than a question may take to cross.
#[test]
fn nodes_started_together_exchange_on_four_datagrams_a_pair() {
    let peers = 256;
    let mut s = Scale::new(peers, 1, 0.0);
    s.spread = Duration::ZERO;
    let o = run(&s, Duration::from_secs(1));
    assert_eq!(o.ready, peers, "{o:?}");
    let pairs = (peers * (peers - 1) / 2) as u64;
    assert_eq!(o.datagrams, 4 * pairs, "{o:?}");
}

/// The figures for `make bench`: `cargo test --release --lib
/// machine::scale::figures -- --ignored --nocapture`, with
/// `ROLLCALL_SCALE_PEERS` (default 1000,2000) and `ROLLCALL_SCALE_SEEDS`:
/// every size started within a second with 0% and 20% loss, then all at
/// the same instant without loss (every pair's first heartbeats cross).
/// `ROLLCALL_SCALE_RUNS` picks some of them: `spread`, `loss`, `together`
/// (all three by default); the last holds every first heartbeat in
/// flight at once, n² events, which 10 000 nodes have no room for.
#[test]
#[ignore]
fn figures() {
    let sizes = std::env::var("ROLLCALL_SCALE_PEERS").unwrap_or_else(|_| "1000,2000".into());
    let seeds: u64 = std::env::var("ROLLCALL_SCALE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let runs =
        std::env::var("ROLLCALL_SCALE_RUNS").unwrap_or_else(|_| "spread,loss,together".into());
    let picked: Vec<&str> = runs.split(',').map(str::trim).collect();
    for peers in sizes
        .split(',')
        .filter_map(|n| n.trim().parse::<usize>().ok())
    {
        for (name, loss, together) in [
            ("spread", 0.0, false),
            ("loss", 0.2, false),
            ("together", 0.0, true),
        ] {
            if !picked.contains(&name) {
                continue;
            }
            for seed in 1..=seeds {
                let mut s = Scale::new(peers, seed, loss);
                if together {
                    s.spread = Duration::ZERO;
                }
                let o = run(&s, Duration::from_secs(10));
                println!("{}", summary(&s, &o));
            }
        }
    }
}
