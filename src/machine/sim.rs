//! Deterministic simulation of the real [`Node`] on a virtual clock and a
//! virtual network.
//!
//! One seed decides everything: how many peers, which faults, every loss,
//! duplication and delay (and so every reordering), partitions and their
//! healing, crashes and restarts (with a new incarnation, and with names, a
//! new address), late starts, a peer with another hosts list. The same
//! seed replays the same run; a failing run names its seed and how to
//! replay it.
//!
//! The simulator keeps its own record of what was delivered to whom and
//! checks, on every run:
//!
//! - safety: a node announces READY only once it has received a heartbeat
//!   from, and an acknowledgement by, the latest incarnation of every other
//!   peer that reached it; with `--barrier`, no node exits before every
//!   node has announced READY; a node with another hosts list, and every
//!   node that needs it, never announces READY;
//! - liveness: once the network is healed and every peer is up (at
//!   `heal`), every node is READY by `heal + liveness_bound`, where the
//!   bound is two intervals (one retransmission or steady heartbeat at the
//!   capped backoff, one name resolution retry at its capped backoff) plus
//!   four network delays and a resolver delay; with `--barrier` every node
//!   has exited 0 a linger and an interval later (unless a node passed the
//!   barrier and left before the network healed: then the others need only
//!   be READY, and leave at their timeout);
//! - the node never panics, and its per-peer state stays bounded.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Action, Input, MAX_ADDRS, Node, Params, Reason};
use crate::hosts::{self, Entry};
use crate::wire::{self, Key, Kind};

const PORT: u16 = 7610;
const RESOLVER_DELAY: Duration = Duration::from_millis(5);

/// splitmix64: small, fast, and the same everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn duration(&mut self, max: Duration) -> Duration {
        max.mul_f64(self.unit())
    }
}

/// What one seed decided about a run.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub peers: usize,
    pub barrier: bool,
    pub interval: Duration,
    /// Peers are DNS names, resolved by the simulated resolver once their
    /// node has started; a restarted node gets a new address.
    pub names: bool,
    /// Every datagram carries a MAC.
    pub secret: bool,
    pub loss: f64,
    pub duplicate: f64,
    pub max_delay: Duration,
    /// Until `heal`, the network may be split in two for a while.
    pub partitions: bool,
    pub crashes: bool,
    /// Entry index of a node that reads another hosts list.
    pub other_hosts: Option<usize>,
    /// After this, every node is up, nothing is lost and nothing split.
    pub heal: Duration,
}

impl Scenario {
    /// Mostly small clusters, sometimes up to 64 peers; faults drawn at
    /// random, one at a time or all together.
    pub fn from_seed(seed: u64) -> Scenario {
        let mut r = Rng::new(seed ^ 0x5ce7_a210);
        let peers = match r.range(0, 99) {
            0..=59 => r.range(2, 6),
            60..=89 => r.range(7, 16),
            90..=97 => r.range(17, 32),
            _ => r.range(33, 64),
        } as usize;
        let barrier = r.chance(0.3);
        Scenario {
            seed,
            peers,
            barrier,
            interval: Duration::from_millis(r.range(200, 2000)),
            names: r.chance(0.4),
            secret: r.chance(0.3),
            loss: if r.chance(0.6) { r.unit() * 0.5 } else { 0.0 },
            duplicate: if r.chance(0.3) { r.unit() * 0.3 } else { 0.0 },
            max_delay: Duration::from_micros(r.range(50, 50_000)),
            partitions: r.chance(0.3),
            crashes: !barrier && r.chance(0.4),
            other_hosts: r
                .chance(0.05)
                .then(|| r.range(0, peers as u64 - 1) as usize),
            heal: Duration::from_millis(r.range(0, 20_000)),
        }
    }

    pub fn params(&self) -> Params {
        Params {
            interval: self.interval,
            timeout: Duration::from_secs(24 * 3600),
            barrier: self.barrier,
            authenticated: self.secret,
        }
    }

    /// When every node must be READY, counted from `heal`.
    pub fn liveness_bound(&self) -> Duration {
        self.interval * 2 + self.max_delay * 4 + RESOLVER_DELAY
    }
}

#[derive(Debug)]
enum What {
    Deliver {
        from: usize,
        to: usize,
        datagram: wire::Datagram,
    },
    Resolved {
        node: usize,
        generation: u32,
        peer: u16,
    },
    Start(usize),
    Crash(usize),
    Split {
        group: Vec<bool>,
    },
    Heal,
}

/// One node of the simulation: its entries, and its running incarnation.
struct Slot {
    entries: Vec<Entry>,
    node: Option<Node>,
    /// Counts starts: a new incarnation each time.
    generation: u32,
    started_once: bool,
    incarnation: u64,
    ready_at: Option<Instant>,
    exited: Option<(Instant, Reason)>,
}

/// What a receiver got from one sender: the latest incarnation heard, and
/// whether its heartbeat and its acknowledgement (of the receiver's current
/// incarnation) arrived.
#[derive(Clone, Copy, Default)]
struct Heard {
    incarnation: u64,
    heartbeat: bool,
    ack: bool,
}

pub struct Sim {
    s: Scenario,
    key: Option<Key>,
    rng: Rng,
    t0: Instant,
    now: Instant,
    events: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    payloads: Vec<Option<What>>,
    order: u64,
    slots: Vec<Slot>,
    /// Each node's next deadline, kept current after every input to it.
    deadlines: Vec<Option<Instant>>,
    /// `heard[to][from]`, for the receiver's current incarnation.
    heard: Vec<Vec<Heard>>,
    split: Option<Vec<bool>>,
    healed: bool,
    /// Datagrams delivered, lost, and steps taken: for the report.
    pub delivered: u64,
    pub lost: u64,
    pub steps: u64,
}

/// A broken invariant, with what it takes to replay it.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulation seed {:#x} failed: {}\n  replay: ROLLCALL_SIM_SEED={:#x} cargo test --lib sim::replay -- --ignored --nocapture",
            self.seed, self.message, self.seed
        )
    }
}

impl Sim {
    pub fn new(s: Scenario) -> Sim {
        let t0 = Instant::now();
        let mut rng = Rng::new(s.seed);
        let shared = entries(&s, 0);
        let slots = (0..s.peers)
            .map(|i| Slot {
                entries: if s.other_hosts == Some(i) {
                    entries(&s, 1)
                } else {
                    shared.clone()
                },
                node: None,
                generation: 0,
                started_once: false,
                incarnation: 0,
                ready_at: None,
                exited: None,
            })
            .collect();
        let mut sim = Sim {
            heard: vec![vec![Heard::default(); s.peers]; s.peers],
            deadlines: vec![None; s.peers],
            key: s.secret.then(|| Key::from_secret(b"simulated secret")),
            rng: Rng::new(rng.next_u64()),
            t0,
            now: t0,
            events: BinaryHeap::new(),
            payloads: Vec::new(),
            order: 0,
            slots,
            split: None,
            healed: false,
            delivered: 0,
            lost: 0,
            steps: 0,
            s,
        };
        let heal = sim.s.heal;
        for i in 0..sim.s.peers {
            let late = sim.rng.chance(0.3);
            let at = if late {
                sim.rng.duration(heal)
            } else {
                Duration::ZERO
            };
            sim.at(t0 + at, What::Start(i));
            if sim.s.crashes && sim.rng.chance(0.3) {
                let crash = sim.rng.duration(heal);
                sim.at(t0 + crash.max(at), What::Crash(i));
            }
        }
        if sim.s.partitions {
            let mut t = Duration::ZERO;
            while t < heal {
                t += sim.rng.duration(heal / 2);
                let group = (0..sim.s.peers).map(|_| sim.rng.chance(0.5)).collect();
                sim.at(t0 + t.min(heal), What::Split { group });
                t += sim.rng.duration(heal / 4);
                sim.at(t0 + t.min(heal), What::Heal);
            }
        }
        sim.at(t0 + heal, What::Heal);
        sim
    }

    fn at(&mut self, when: Instant, what: What) {
        self.order += 1;
        self.payloads.push(Some(what));
        self.events
            .push(Reverse((when, self.order, self.payloads.len() - 1)));
    }

    fn addr(&self, i: usize) -> SocketAddr {
        let generation = if self.s.names {
            self.slots[i].generation.max(1)
        } else {
            1
        };
        let ip = Ipv4Addr::new(10, generation as u8, (i >> 8) as u8, i as u8);
        SocketAddr::new(IpAddr::V4(ip), PORT)
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        (0..self.s.peers).find(|&i| self.slots[i].node.is_some() && self.addr(i) == addr)
    }

    /// Runs to the end of the liveness bound (with `--barrier`, past the
    /// linger) and checks every invariant.
    pub fn run(mut self) -> Result<Sim, Failure> {
        let mut end = self.t0 + self.s.heal + self.s.liveness_bound();
        if self.s.barrier {
            end += self.s.params().linger() + self.s.interval;
        }
        while let Some(next) = self.next_instant() {
            if next > end {
                break;
            }
            self.now = next;
            self.steps += 1;
            if self.steps > 50_000_000 {
                return Err(self.fail("the simulation does not settle".into()));
            }
            self.step()?;
        }
        self.now = end;
        self.check_end()?;
        Ok(self)
    }

    fn next_instant(&self) -> Option<Instant> {
        let event = self.events.peek().map(|Reverse((t, _, _))| *t);
        let deadline = self.deadlines.iter().flatten().min().copied();
        match (event, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn step(&mut self) -> Result<(), Failure> {
        if let Some(&Reverse((t, _, k))) = self.events.peek()
            && t <= self.now
        {
            self.events.pop();
            let what = self.payloads[k].take().expect("each event once");
            return self.happen(what);
        }
        for i in 0..self.s.peers {
            if self.deadlines[i].is_some_and(|d| d <= self.now) {
                self.input(i, Input::Tick)?;
            }
        }
        Ok(())
    }

    fn happen(&mut self, what: What) -> Result<(), Failure> {
        match what {
            What::Start(i) => self.start(i),
            What::Crash(i) => {
                self.deadlines[i] = None;
                if self.slots[i].node.take().is_some() {
                    let back = self.rng.duration(self.s.interval * 4);
                    self.at(self.now + back, What::Start(i));
                }
                Ok(())
            }
            What::Split { group } => {
                if !self.healed {
                    self.split = Some(group);
                }
                Ok(())
            }
            What::Heal => {
                self.split = None;
                if self.now >= self.t0 + self.s.heal {
                    self.healed = true;
                    for i in 0..self.s.peers {
                        if self.slots[i].node.is_none() && self.slots[i].exited.is_none() {
                            self.start(i)?;
                        }
                    }
                }
                Ok(())
            }
            What::Resolved {
                node,
                generation,
                peer,
            } => {
                if self.slots[node].node.is_none() || self.slots[node].generation != generation {
                    return Ok(());
                }
                let j = usize::from(peer - 1);
                let result = if j < self.s.peers && self.slots[j].started_once {
                    Ok(vec![self.addr(j)])
                } else {
                    Err("Name or service not known".to_string())
                };
                self.input(node, Input::Resolved { peer, result })
            }
            What::Deliver { from, to, datagram } => self.deliver(from, to, datagram),
        }
    }

    fn start(&mut self, i: usize) -> Result<(), Failure> {
        if self.slots[i].node.is_some() || self.slots[i].exited.is_some() {
            return Ok(());
        }
        let slot = &mut self.slots[i];
        slot.generation += 1;
        slot.started_once = true;
        // Incarnations grow with every start, as start times do.
        slot.incarnation = self.now.duration_since(self.t0).as_micros() as u64 + 1;
        slot.ready_at = None;
        let node = Node::new(
            &slot.entries,
            i,
            hosts::fingerprint(&slot.entries),
            slot.incarnation,
            self.rng.next_u64(),
            self.s.params(),
        );
        slot.node = Some(node);
        for from in 0..self.s.peers {
            self.heard[i][from] = Heard::default();
        }
        self.input(i, Input::Start)
    }

    fn deliver(&mut self, from: usize, to: usize, datagram: wire::Datagram) -> Result<(), Failure> {
        if self.slots[to].node.is_none() {
            return Ok(());
        }
        self.delivered += 1;
        let message = wire::decode(datagram.as_bytes(), self.key.as_ref());
        let src = self.addr(from);
        // Only what the receiver can tell comes from the sender counts: a
        // MAC proves it; without one, an address it does not know for that
        // sender is not evidence of anything.
        let verifiable = self.key.is_some()
            || self.slots[to].node.as_ref().is_some_and(|n| {
                n.slot(from as u16 + 1)
                    .is_some_and(|k| n.peers[k].addrs.contains(&src))
            });
        if let (Ok(m), true) = (&message, verifiable) {
            let ours = hosts::fingerprint(&self.slots[to].entries);
            if m.hosts == ours && m.from == from as u16 + 1 {
                let me = self.slots[to].incarnation;
                let h = &mut self.heard[to][from];
                if m.incarnation > h.incarnation {
                    *h = Heard {
                        incarnation: m.incarnation,
                        ..Heard::default()
                    };
                }
                if m.incarnation == h.incarnation {
                    match m.kind {
                        Kind::Heartbeat => h.heartbeat = true,
                        Kind::Ack if m.echo == me => h.ack = true,
                        Kind::Ack | Kind::Stale => {}
                    }
                }
            }
        }
        self.input(to, Input::Datagram { from: src, message })
    }

    fn input(&mut self, i: usize, input: Input) -> Result<(), Failure> {
        let Some(node) = self.slots[i].node.as_mut() else {
            return Ok(());
        };
        let mut out = Vec::new();
        node.transition(input, self.now, &mut out);
        self.deadlines[i] = node.next_deadline();
        if node.peers.len() != self.s.peers - 1 && self.s.other_hosts != Some(i)
            || node.peers.iter().any(|p| p.addrs.len() > MAX_ADDRS)
        {
            return Err(self.fail(format!("node {i}: per-peer state grew")));
        }
        for action in out {
            self.perform(i, action)?;
        }
        Ok(())
    }

    fn perform(&mut self, i: usize, action: Action) -> Result<(), Failure> {
        match action {
            Action::Send { to, message } => {
                let Some(j) = self.index_of(to) else {
                    self.lost += 1;
                    return Ok(());
                };
                let cut = self.split.as_ref().is_some_and(|g| g[i] != g[j]);
                let lossy = !self.healed;
                if cut || (lossy && self.rng.chance(self.s.loss)) {
                    self.lost += 1;
                    return Ok(());
                }
                let datagram = wire::encode(&message, self.key.as_ref());
                let copies = if lossy && self.rng.chance(self.s.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let delay = self.rng.duration(self.s.max_delay);
                    self.at(
                        self.now + delay,
                        What::Deliver {
                            from: i,
                            to: j,
                            datagram,
                        },
                    );
                }
            }
            Action::Resolve { peer, .. } => {
                let delay = self.rng.duration(RESOLVER_DELAY);
                let generation = self.slots[i].generation;
                self.at(
                    self.now + delay,
                    What::Resolved {
                        node: i,
                        generation,
                        peer,
                    },
                );
            }
            Action::Ready => self.check_ready(i)?,
            Action::Exit(reason) => {
                if matches!(reason, Reason::BarrierComplete | Reason::BarrierLingered) {
                    let missing: Vec<usize> = (0..self.s.peers)
                        .filter(|&j| j != i && self.slots[j].ready_at.is_none())
                        .collect();
                    if !missing.is_empty() {
                        return Err(self.fail(format!(
                            "node {i} passed the barrier while {missing:?} were not READY"
                        )));
                    }
                }
                self.slots[i].exited = Some((self.now, reason));
                self.slots[i].node = None;
                self.deadlines[i] = None;
            }
            Action::Event(e) => {
                // Every event must render.
                let _ = e.to_string();
            }
        }
        Ok(())
    }

    fn check_ready(&mut self, i: usize) -> Result<(), Failure> {
        if self.slots[i].ready_at.is_some() {
            return Err(self.fail(format!("node {i} announced READY twice")));
        }
        if self.s.other_hosts.is_some() {
            return Err(self.fail(format!(
                "node {i} announced READY although a peer reads another hosts list"
            )));
        }
        for j in (0..self.s.peers).filter(|&j| j != i) {
            let h = self.heard[i][j];
            if !(h.heartbeat && h.ack) {
                return Err(self.fail(format!(
                    "node {i} announced READY without a heartbeat ({}) and an acknowledgement ({}) from incarnation {} of node {j}",
                    h.heartbeat, h.ack, h.incarnation
                )));
            }
        }
        self.slots[i].ready_at = Some(self.now);
        Ok(())
    }

    fn check_end(&self) -> Result<(), Failure> {
        if self.s.other_hosts.is_some() {
            return Ok(());
        }
        // With --barrier, a node that passed the barrier before the network
        // healed is gone: whoever was cut off from every confirmation of it
        // can only be READY (it leaves at its timeout, with exit 0).
        let heal = self.t0 + self.s.heal;
        let left_early = self
            .slots
            .iter()
            .any(|s| s.exited.is_some_and(|(t, _)| t < heal));
        let mut late = String::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let ok = if self.s.barrier {
                matches!(
                    slot.exited,
                    Some((_, Reason::BarrierComplete | Reason::BarrierLingered))
                ) || (left_early && slot.ready_at.is_some())
            } else {
                slot.ready_at.is_some() && slot.node.is_some()
            };
            if !ok {
                let _ = write!(late, " {i}");
            }
        }
        if late.is_empty() {
            Ok(())
        } else {
            Err(self.fail(format!(
                "nodes{late} not {} {:?} after the network healed",
                if self.s.barrier {
                    "through the barrier"
                } else {
                    "READY"
                },
                self.now - (self.t0 + self.s.heal)
            )))
        }
    }

    fn fail(&self, message: String) -> Failure {
        Failure {
            seed: self.s.seed,
            message: format!("{message} at {:?}; {:?}", self.now - self.t0, self.s),
        }
    }
}

/// The hosts list of a run: `variant` 1 is another list, with one more
/// entry.
fn entries(s: &Scenario, variant: usize) -> Vec<Entry> {
    let mut text = String::new();
    for i in 0..s.peers + variant {
        if s.names {
            let _ = writeln!(text, "peer{}", i + 1);
        } else {
            let _ = writeln!(text, "10.1.{}.{}:{PORT}", i >> 8, i & 0xff);
        }
    }
    hosts::parse(&text, PORT).expect("the simulator's hosts list parses")
}

/// Runs seeds from `first` until `count` are done or `budget` is spent.
pub fn run_seeds(first: u64, count: u64, budget: Duration) -> Result<u64, Failure> {
    let started = Instant::now();
    let mut done = 0;
    while done < count && started.elapsed() < budget {
        Sim::new(Scenario::from_seed(first + done)).run()?;
        done += 1;
    }
    Ok(done)
}

#[test]
fn thousands_of_seeds_keep_every_invariant() {
    let started = Instant::now();
    let done = run_seeds(1, 2_000, Duration::from_secs(60)).unwrap_or_else(|f| panic!("{f}"));
    println!("{done} seeds in {:?}", started.elapsed());
    assert!(done >= 500, "only {done} seeds ran within the budget");
}

#[test]
#[ignore = "profiling aid"]
fn slowest_seeds() {
    let mut times: Vec<(Duration, u64, usize, u64)> = (1..300)
        .map(|seed| {
            let t = Instant::now();
            let s = Scenario::from_seed(seed);
            let peers = s.peers;
            let sim = Sim::new(s).run().unwrap_or_else(|f| panic!("{f}"));
            (t.elapsed(), seed, peers, sim.steps)
        })
        .collect();
    times.sort();
    let total: Duration = times.iter().map(|t| t.0).sum();
    println!("total {total:?}");
    for t in times.iter().rev().take(10) {
        println!("{t:?}");
    }
}

#[test]
fn the_same_seed_replays_the_same_run() {
    for seed in [3, 17, 99] {
        let a = Sim::new(Scenario::from_seed(seed)).run().unwrap();
        let b = Sim::new(Scenario::from_seed(seed)).run().unwrap();
        assert_eq!(
            (a.delivered, a.lost, a.steps),
            (b.delivered, b.lost, b.steps)
        );
        assert!(a.delivered > 0);
    }
}

#[test]
fn a_scenario_with_every_fault_still_converges() {
    let mut s = Scenario::from_seed(7);
    s.peers = 16;
    s.barrier = false;
    s.names = true;
    s.loss = 0.3;
    s.duplicate = 0.2;
    s.partitions = true;
    s.crashes = true;
    s.other_hosts = None;
    s.heal = Duration::from_secs(10);
    let sim = Sim::new(s).run().unwrap_or_else(|f| panic!("{f}"));
    assert!(sim.lost > 0 && sim.delivered > 0);
}

#[test]
fn the_checker_catches_a_node_that_reads_another_list() {
    // Its peers must never be READY: the run passes only because nobody
    // announces READY, which the checker verifies on every announcement.
    let mut s = Scenario::from_seed(11);
    s.peers = 4;
    s.other_hosts = Some(2);
    s.crashes = false;
    let sim = Sim::new(s).run().unwrap_or_else(|f| panic!("{f}"));
    assert!(sim.slots.iter().all(|slot| slot.ready_at.is_none()));
}

/// `ROLLCALL_SIM_SEED=0x2a cargo test --lib sim::replay -- --ignored --nocapture`
#[test]
#[ignore = "run on demand with ROLLCALL_SIM_SEED"]
fn replay() {
    let seed = std::env::var("ROLLCALL_SIM_SEED").expect("set ROLLCALL_SIM_SEED");
    let seed = match seed.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => seed.parse(),
    }
    .expect("a seed is a number");
    let s = Scenario::from_seed(seed);
    println!("{s:#?}");
    match Sim::new(s).run() {
        Ok(sim) => println!(
            "passed: {} delivered, {} lost, {} steps",
            sim.delivered, sim.lost, sim.steps
        ),
        Err(f) => panic!("{f}"),
    }
}

/// `make soak SECONDS=600`: seeds from a random start, for as long as asked.
#[test]
#[ignore = "run by make soak"]
fn soak() {
    let seconds: u64 = std::env::var("ROLLCALL_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let first = Rng::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    )
    .next_u64();
    let done =
        run_seeds(first, u64::MAX, Duration::from_secs(seconds)).unwrap_or_else(|f| panic!("{f}"));
    println!("soak: {done} seeds from {first:#x} passed in {seconds}s");
}
