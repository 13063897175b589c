//! Deterministic simulation of the real [`Node`] on a virtual clock and a
//! virtual network.
//!
//! One seed decides everything: how many peers, which faults, every loss,
//! duplication and delay (and so every reordering), partitions and their
//! healing, crashes and restarts (with a new incarnation, sometimes lower
//! than the last one as a clock that is behind gives, and with names, a new
//! address), crashes for good, pauses (SIGSTOP: no timer fires, datagrams
//! wait in a bounded socket buffer), crashes and pauses around a node's
//! READY and DONE, late starts, entries in both address families, a peer
//! with another hosts list, and an attacker that sends bad datagrams from a
//! real peer's listed address. The same seed replays the same run; a
//! failing run names its seed and how to replay it.
//!
//! The oracles are written from what the README promises, never from the
//! machine's own functions or its records: the simulator keeps its own
//! account of what was genuinely sent and delivered, and checks on every
//! run:
//!
//! - READY: a node announces READY only once, per process, and only when,
//!   for every other peer, a heartbeat from and an acknowledgement (echoing
//!   the receiver's incarnation) by that peer's latest incarnation that
//!   reached it (the highest, or the newest process's: one restarted
//!   behind the clock speaks with a lower one) were delivered, and that
//!   incarnation was heard within the silence threshold (three intervals):
//!   never while a peer is crashed or paused for longer, or has left for
//!   longer. Replays by the attacker of an earlier incarnation's
//!   datagrams are never evidence of anything. A node with another hosts
//!   list, and every node that needs it, never announces READY;
//! - `--barrier`: a node exits 0 only after it passed the barrier (said
//!   that every peer is READY, or DONE) and every other peer announced READY (some incarnation of it,
//!   before the exit); a timeout before that is 124. BarrierComplete means
//!   every peer confirmed the DONE; a node that said DONE leaves within one
//!   interval;
//! - timeouts: a process exits at its timeout, not before, and is gone by
//!   the end of the run;
//! - warnings: the warning-level events about dropped input stay under a
//!   fixed bound, whatever arrives;
//! - liveness: once the network is healed and every peer is up (at
//!   `heal`, or later when a restart, a resume or a cut comes after it),
//!   every node is READY within two intervals plus four network delays and
//!   a resolver delay; with `--barrier`, every node has exited 0 two
//!   intervals and four delays later (unless a node that said DONE before
//!   the network settled left unheard, or some node said DONE while a
//!   process was not READY);
//! - the node never panics, and its per-peer state stays bounded.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::resolve::MAX_ADDRS;
use super::{Action, Event, Input, Node, Params, Reason};
use crate::Exit;
use crate::hosts::{self, Entry};
use crate::wire::{self, Flags, Key, Kind, Message};

const PORT: u16 = 7610;
const RESOLVER_DELAY: Duration = Duration::from_millis(5);
/// The README's silence threshold, in intervals: a peer not heard for
/// this long is missing, and no READY may count on it.
const SILENT_INTERVALS: u32 = 3;
/// At most this many warning-level events (`Event::Dropping`,
/// `Event::Mismatch`) per node in any `WARNING_WINDOW` of simulated time:
/// a fixed bound, whatever arrives.
const MAX_WARNINGS: usize = 10;
const WARNING_WINDOW: Duration = Duration::from_secs(10);
/// A paused node's socket buffer, in datagrams: beyond it the newest are
/// dropped, as the kernel does.
const SOCKET_BUFFER: usize = 256;
/// The timeout of a run that has none: never reached.
const DAY: Duration = Duration::from_secs(24 * 3600);
/// Incarnations are start times, in microseconds of a wall clock.
const EPOCH_MICROS: u64 = 1_764_000_000_000_000;
/// How often a seed lists nodes in both address families. Datagrams
/// between the families come from a source address no entry lists: these
/// runs pass only once the machine believes them.
pub const DUAL_STACK: f64 = 0.15;

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
    /// Until `heal`, the network may be split in two for a while; and cut
    /// for a moment around a node's READY or DONE.
    pub partitions: bool,
    /// Crashes and restarts before `heal`, and around a node's READY or
    /// DONE.
    pub crashes: bool,
    /// A restart's incarnation is sometimes lower than the one before: the
    /// host's clock is behind.
    pub clock_behind: bool,
    /// A node crashes and never comes back; such a run has a finite
    /// timeout, so that every exit is seen.
    pub crash_for_good: bool,
    /// Nodes stop for a while (SIGSTOP), before `heal` and around READY or
    /// DONE.
    pub pauses: bool,
    /// Before `heal`, an attacker sends bad datagrams at a high rate from a
    /// real peer's listed address.
    pub attack: bool,
    /// Entries written as IPv6 addresses (`[fd00::1:i]:PORT`); the others
    /// are IPv4. Every node has an address in each family, and sends from
    /// the one of its destination's family.
    pub ipv6: Vec<bool>,
    /// Entry index of a node that reads another hosts list.
    pub other_hosts: Option<usize>,
    /// After this, every node is up, nothing is lost and nothing split
    /// (faults the run triggers later move it on).
    pub heal: Duration,
    /// Every process's run time.
    pub timeout: Duration,
    /// Nodes that start at a given time instead of one the seed draws.
    pub late: Vec<(usize, Duration)>,
    /// Faults written by hand, on top of those the seed draws.
    pub script: Vec<(When, Fault)>,
}

/// When a fault strikes.
#[derive(Clone, Debug)]
pub enum When {
    /// This long after the start of the run.
    At(Duration),
    /// This long after `node` first announces READY (at once: before the
    /// rest of that transition's datagrams leave).
    Ready { node: usize, after: Duration },
    /// This long after `node` first says DONE (at once: before the rest of
    /// that transition's datagrams leave).
    Done { node: usize, after: Duration },
}

/// Something that goes wrong.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The node's process dies. It starts again `restart` later, never if
    /// `None`, with a new incarnation: lower than the last one if `behind`.
    Crash {
        node: usize,
        restart: Option<Duration>,
        behind: bool,
    },
    /// The node stops (SIGSTOP) for `duration`: no timer fires, datagrams
    /// to it wait in its socket buffer, and are read when it resumes.
    Pause { node: usize, duration: Duration },
    /// Datagrams between `group` and the others are lost for `duration`.
    Cut {
        group: Vec<bool>,
        duration: Duration,
    },
    /// Bad datagrams to `target`, every `every` for `duration`, from the
    /// listed address of `posing_as`.
    Attack {
        target: usize,
        posing_as: usize,
        every: Duration,
        duration: Duration,
    },
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
        let interval = Duration::from_millis(r.range(200, 2000));
        let names = r.chance(0.4);
        let secret = r.chance(0.3);
        let loss = if r.chance(0.6) { r.unit() * 0.5 } else { 0.0 };
        let duplicate = if r.chance(0.3) { r.unit() * 0.3 } else { 0.0 };
        let max_delay = Duration::from_micros(r.range(50, 50_000));
        let partitions = r.chance(0.3);
        let crashes = r.chance(0.4);
        let other_hosts = r
            .chance(0.05)
            .then(|| r.range(0, peers as u64 - 1) as usize);
        let heal = Duration::from_millis(r.range(0, 20_000));
        let clock_behind = crashes && r.chance(0.5);
        let crash_for_good = r.chance(0.1);
        let pauses = r.chance(0.25);
        let attack = r.chance(0.15);
        let dual_stack = r.chance(DUAL_STACK);
        let ipv6 = (0..peers).map(|_| dual_stack && r.chance(0.5)).collect();
        let timeout = if crash_for_good {
            heal + interval * r.range(4, 10) as u32
        } else if r.chance(0.05) {
            // Short: it runs out while the faults go on.
            interval + r.duration(heal + interval * 4)
        } else {
            DAY
        };
        Scenario {
            seed,
            peers,
            barrier,
            interval,
            names,
            secret,
            loss,
            duplicate,
            max_delay,
            partitions,
            crashes,
            clock_behind,
            crash_for_good,
            pauses,
            attack,
            ipv6,
            other_hosts,
            heal,
            timeout,
            late: Vec::new(),
            script: Vec::new(),
        }
    }

    pub fn params(&self) -> Params {
        Params {
            interval: self.interval,
            timeout: self.timeout,
            barrier: self.barrier,
            authenticated: self.secret,
            job: None,
        }
    }

    /// When every node must be READY, counted from the moment the network
    /// healed and every peer is up: two intervals (one retransmission or
    /// steady heartbeat at the capped backoff, one name resolution retry at
    /// its capped backoff) plus four network delays and a resolver delay.
    pub fn liveness_bound(&self) -> Duration {
        self.interval * 2 + self.max_delay * 4 + RESOLVER_DELAY
    }

    /// With `--barrier`, when every node must have left once every node is
    /// READY: the DONE and its confirmation, or the linger of at most one
    /// interval, and a retransmission.
    pub fn barrier_bound(&self) -> Duration {
        self.interval * 2 + self.max_delay * 4
    }

    fn silence(&self) -> Duration {
        self.interval * SILENT_INTERVALS
    }
}

/// Where a delivered datagram comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// Sent by the node's process itself.
    Network,
    /// An attacker's copy of a datagram the node's process sent.
    Replay,
    /// Made up by an attacker.
    Forged,
}

/// A datagram on its way.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    /// The node it was sent by, or that an attacker poses as.
    from: usize,
    /// The sender's generation (its process count) when it was sent.
    generation: u32,
    to: usize,
    /// The source address the receiver sees.
    src: SocketAddr,
    datagram: wire::Datagram,
    origin: Origin,
}

#[derive(Debug)]
enum What {
    Deliver(InFlight),
    Resolved {
        node: usize,
        generation: u32,
        peer: u16,
    },
    Start {
        node: usize,
        behind: bool,
    },
    Fault(Fault),
    Resume {
        node: usize,
        generation: u32,
    },
    /// The next datagram of attack number `.0`.
    Attack(usize),
    Split {
        group: Vec<bool>,
    },
    Heal,
    Mend,
}

/// What a stopped process will read once it resumes.
#[derive(Debug)]
enum Queued {
    /// A datagram, and when it reached the socket.
    Datagram(InFlight, Instant),
    Resolved {
        peer: u16,
        result: Result<Vec<SocketAddr>, String>,
    },
}

struct Paused {
    since: Instant,
    queue: VecDeque<Queued>,
    datagrams: usize,
}

/// When the current process first said DONE.
#[derive(Clone, Copy)]
struct Done {
    at: Instant,
    /// Its paused time by then.
    paused: Duration,
    /// The sequence number of its first heartbeat that carried DONE.
    seq: Option<u64>,
}

/// One node of the simulation: its entries, and its running process.
struct Slot {
    entries: Vec<Entry>,
    hosts: u64,
    node: Option<Node>,
    /// Counts starts: a new incarnation each time.
    generation: u32,
    incarnation: u64,
    incarnations: Vec<u64>,
    started_at: Option<Instant>,
    /// The current process's READY.
    ready_at: Option<Instant>,
    /// Some process of this node announced READY.
    ever_ready: bool,
    done: Option<Done>,
    /// The current process passed the barrier: it said every peer is
    /// READY, or DONE.
    passed: bool,
    exited: Option<(Instant, Reason)>,
    /// Crashed, never to start again.
    dead: bool,
    /// Its next start, due to a crash, comes with the clock behind.
    behind: bool,
    paused: Option<Paused>,
    /// Time the current process spent stopped.
    paused_total: Duration,
    /// The current process's recent warnings.
    warnings: VecDeque<Instant>,
}

/// What a receiver's current process got from one sender's incarnation.
#[derive(Clone, Copy)]
struct FromGeneration {
    /// What the receiver can tell processes apart by: the incarnation. A
    /// process restarted behind the clock first speaks with a lower one
    /// (which no receiver may believe: it could be a replay), then with
    /// the newer one it is told to take.
    incarnation: u64,
    generation: u32,
    heartbeat: bool,
    /// An acknowledgement echoing the receiver's incarnation.
    ack: bool,
    last: Instant,
}

/// What a receiver's current process got from one sender, counting only
/// what the sender genuinely sent and the receiver may believe.
#[derive(Clone, Default)]
struct Heard {
    /// The highest incarnation heard from an address the receiver must
    /// believe (0: none).
    latest: u64,
    /// The newest process (generation) heard from such an address. A
    /// process restarted behind the clock speaks with a lower incarnation
    /// than the one before it: a receiver that never believed the higher
    /// one may exchange with it, and that is an exchange with the peer's
    /// current incarnation.
    newest: u32,
    generations: Vec<FromGeneration>,
    /// It acknowledged a heartbeat of ours that carried DONE.
    confirmed: bool,
}

/// An attacker: who it targets, whose address it sends from, and the
/// genuine datagrams between the two it captured to replay.
struct Attack {
    target: usize,
    posing_as: usize,
    every: Duration,
    until: Instant,
    sent: u64,
    captured: Vec<(u32, wire::Datagram)>,
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
    /// `heard[to][from]`, for the receiver's current process.
    heard: Vec<Vec<Heard>>,
    /// `told[node][peer]`: the address the resolver last gave the node's
    /// current process for the peer's name.
    told: Vec<Vec<Option<SocketAddr>>>,
    /// The seed's partitions, until `heal`.
    split: Option<Vec<bool>>,
    /// A cut a fault made, at any time.
    cut: Option<Vec<bool>>,
    healed: bool,
    /// From here on every peer is up and the network whole, as far as the
    /// faults scheduled so far go.
    settle: Instant,
    latest_start: Instant,
    first_done: Option<Instant>,
    /// Faults waiting for a node's READY or DONE.
    triggers: Vec<(When, What)>,
    attacks: Vec<Attack>,
    /// What to print as the run goes: 1 faults, READY, DONE, exits and
    /// the nodes' events; 2 every datagram too.
    trace: u8,
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
    /// The seed alone rebuilds the scenario: no test changed it.
    pub from_seed: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulation seed {:#x} failed: {}",
            self.seed, self.message
        )?;
        if self.from_seed {
            write!(
                f,
                "\n  replay: ROLLCALL_SIM_SEED={:#x} cargo test --lib sim::replay -- --ignored --nocapture",
                self.seed
            )
        } else {
            f.write_str("\n  replay: run the test that built this scenario")
        }
    }
}

impl Sim {
    pub fn new(s: Scenario) -> Sim {
        let t0 = Instant::now();
        let shared = entries(&s, 0);
        let slots = (0..s.peers)
            .map(|i| {
                let entries = if s.other_hosts == Some(i) {
                    entries(&s, 1)
                } else {
                    shared.clone()
                };
                Slot {
                    hosts: hosts::fingerprint(&entries),
                    entries,
                    node: None,
                    generation: 0,
                    incarnation: 0,
                    incarnations: Vec::new(),
                    started_at: None,
                    ready_at: None,
                    ever_ready: false,
                    done: None,
                    passed: false,
                    exited: None,
                    dead: false,
                    behind: false,
                    paused: None,
                    paused_total: Duration::ZERO,
                    warnings: VecDeque::new(),
                }
            })
            .collect();
        let mut sim = Sim {
            heard: vec![vec![Heard::default(); s.peers]; s.peers],
            told: vec![vec![None; s.peers]; s.peers],
            deadlines: vec![None; s.peers],
            key: s.secret.then(|| Key::from_secret(b"simulated secret")),
            rng: Rng::new(s.seed),
            t0,
            now: t0,
            events: BinaryHeap::new(),
            payloads: Vec::new(),
            order: 0,
            slots,
            split: None,
            cut: None,
            healed: false,
            settle: t0 + s.heal,
            latest_start: t0,
            first_done: None,
            triggers: Vec::new(),
            attacks: Vec::new(),
            trace: 0,
            delivered: 0,
            lost: 0,
            steps: 0,
            s,
        };
        // One generator draws the starts and faults first, then the
        // network's every loss, duplicate and delay.
        let mut rng = std::mem::replace(&mut sim.rng, Rng::new(0));
        let plan = sim.draw_faults(&mut rng);
        sim.rng = rng;
        for (when, fault) in plan.into_iter().chain(sim.s.script.clone()) {
            let what = sim.what_of(fault);
            match when {
                When::At(t) => sim.at(t0 + t, what),
                when => sim.triggers.push((when, what)),
            }
        }
        sim.at(t0 + sim.s.heal, What::Heal);
        sim
    }

    /// The seed's starts and faults: the starts are scheduled here, the
    /// faults returned.
    fn draw_faults(&mut self, r: &mut Rng) -> Vec<(When, Fault)> {
        let s = self.s.clone();
        let n = s.peers;
        let heal = s.heal;
        let i4 = s.interval * 4;
        let mut faults = Vec::new();
        for i in 0..n {
            let at = match s.late.iter().find(|(node, _)| *node == i) {
                Some(&(_, at)) => at,
                None if r.chance(0.3) => r.duration(heal),
                None => Duration::ZERO,
            };
            self.at(
                self.t0 + at,
                What::Start {
                    node: i,
                    behind: false,
                },
            );
            if s.crashes && r.chance(0.3) {
                let crash = r.duration(heal).max(at);
                let restart = Some(r.duration(i4));
                let behind = s.clock_behind && r.chance(0.5);
                faults.push((
                    When::At(crash),
                    Fault::Crash {
                        node: i,
                        restart,
                        behind,
                    },
                ));
            }
        }
        let pick = |r: &mut Rng| r.range(0, n as u64 - 1) as usize;
        // Around a node's READY, or with --barrier its DONE.
        let around = |r: &mut Rng, max: Duration| {
            let node = pick(r);
            let after = r.duration(max);
            if s.barrier && r.chance(0.5) {
                When::Done { node, after }
            } else {
                When::Ready { node, after }
            }
        };
        if s.crashes {
            let when = around(r, s.interval);
            let node = pick(r);
            let restart = Some(r.duration(i4));
            let behind = s.clock_behind && r.chance(0.5);
            faults.push((
                when,
                Fault::Crash {
                    node,
                    restart,
                    behind,
                },
            ));
        }
        if s.crash_for_good {
            let when = if r.chance(0.3) {
                When::At(r.duration(heal))
            } else {
                around(r, s.interval)
            };
            let node = pick(r);
            faults.push((
                when,
                Fault::Crash {
                    node,
                    restart: None,
                    behind: false,
                },
            ));
        }
        if s.pauses {
            // Sometimes longer than the silence threshold.
            let (node, duration) = (pick(r), r.duration(s.interval * 6));
            faults.push((When::At(r.duration(heal)), Fault::Pause { node, duration }));
            let when = around(r, s.interval);
            let (node, duration) = (pick(r), r.duration(s.interval * 6));
            faults.push((when, Fault::Pause { node, duration }));
        }
        if s.attack && n >= 2 && heal >= Duration::from_millis(50) {
            let target = pick(r);
            let posing_as = (target + 1 + r.range(0, n as u64 - 2) as usize) % n;
            let start = r.duration(heal.mul_f64(0.8));
            let duration = Duration::from_millis(r.range(200, 2000)).min(heal - start);
            let every = Duration::from_micros(r.range(500, 5000));
            faults.push((
                When::At(start),
                Fault::Attack {
                    target,
                    posing_as,
                    every,
                    duration,
                },
            ));
        }
        if s.partitions {
            // A cut around READY or DONE loses the news of it.
            let when = around(r, s.interval);
            let group = (0..n).map(|_| r.chance(0.5)).collect();
            let duration = r.duration(s.interval * 2);
            faults.push((when, Fault::Cut { group, duration }));
            let mut t = Duration::ZERO;
            while t < heal {
                t += r.duration(heal / 2);
                let group = (0..n).map(|_| r.chance(0.5)).collect();
                self.at(self.t0 + t.min(heal), What::Split { group });
                t += r.duration(heal / 4);
                self.at(self.t0 + t.min(heal), What::Heal);
            }
        }
        faults
    }

    /// An attack is registered at once, so that it captures the genuine
    /// datagrams it will replay from the start of the run.
    fn what_of(&mut self, fault: Fault) -> What {
        if let Fault::Attack {
            target,
            posing_as,
            every,
            duration,
        } = fault
        {
            self.attacks.push(Attack {
                target,
                posing_as,
                every,
                // Set when it starts.
                until: self.t0 + duration,
                sent: 0,
                captured: Vec::new(),
            });
            return What::Attack(self.attacks.len() - 1);
        }
        What::Fault(fault)
    }

    fn at(&mut self, when: Instant, what: What) {
        self.order += 1;
        self.payloads.push(Some(what));
        self.events
            .push(Reverse((when, self.order, self.payloads.len() - 1)));
    }

    /// The generation a node's addresses carry: with names, a restarted
    /// node comes back at a new address.
    fn host_generation(&self, i: usize) -> u32 {
        if self.s.names {
            self.slots[i].generation.max(1)
        } else {
            1
        }
    }

    /// Node `i`'s address in one family.
    fn addr_in(&self, i: usize, v6: bool) -> SocketAddr {
        address(i, v6, self.host_generation(i))
    }

    /// Where node `i` is listed: its own family's address.
    fn primary(&self, i: usize) -> SocketAddr {
        self.addr_in(i, self.s.ipv6[i])
    }

    /// The running (or stopped) node that owns `addr`.
    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        let (generation, j) = match addr.ip() {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                if o[0] != 10 {
                    return None;
                }
                (u32::from(o[1]), usize::from(o[2]) << 8 | usize::from(o[3]))
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                if s[..6] != [0xfd00, 0, 0, 0, 0, 0] {
                    return None;
                }
                (u32::from(s[6]), usize::from(s[7]))
            }
        };
        (addr.port() == PORT
            && j < self.s.peers
            && self.host_generation(j) == generation
            && self.slots[j].node.is_some())
        .then_some(j)
    }

    /// Whether `to` must believe `src` for peer `from`: its listed address
    /// (for a name, the one the resolver last gave it), or any address of
    /// the other family on the listed port, where a dual-stack host sends
    /// from when `to`'s own address is of that family.
    fn must_believe(&self, to: usize, from: usize, src: SocketAddr) -> bool {
        let listed = if self.s.names {
            self.told[to][from]
        } else {
            Some(address(from, self.s.ipv6[from], 1))
        };
        listed.is_some_and(|l| src == l || (src.is_ipv4() != l.is_ipv4() && src.port() == l.port()))
    }

    /// The end of the run: the liveness bound after the network settled
    /// (with `--barrier`, the barrier's bound after that), and past every
    /// finite timeout.
    fn end(&self) -> Instant {
        let mut end = self.settle + self.s.liveness_bound();
        if self.s.barrier {
            end += self.s.barrier_bound();
        }
        if self.s.timeout < DAY {
            end = end.max(self.latest_start + self.s.timeout + Duration::from_millis(1));
        }
        end
    }

    /// Prints what happens, up to `level`: 1 faults, READY, DONE, exits and
    /// the nodes' events; 2 every datagram too.
    pub fn traced(mut self, level: u8) -> Sim {
        self.trace = level;
        self
    }

    fn log(&self, level: u8, what: std::fmt::Arguments) {
        if self.trace >= level {
            println!("{:>14?} {what}", self.now - self.t0);
        }
    }

    fn settle_at(&mut self, t: Instant) {
        self.settle = self.settle.max(t);
    }

    /// Runs to the end of the liveness bound (with `--barrier`, the
    /// barrier's bound after it; with a finite timeout, past every
    /// process's timeout) and checks every invariant.
    pub fn run(mut self) -> Result<Sim, Failure> {
        while let Some(next) = self.next_instant() {
            if next > self.end() {
                break;
            }
            self.now = next;
            self.steps += 1;
            if self.steps > 50_000_000 {
                return Err(self.fail("the simulation does not settle".into()));
            }
            self.step()?;
        }
        self.now = self.end();
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
        match &what {
            What::Deliver(f) => self.log(2, format_args!("deliver {f:?}")),
            What::Resolved { .. } | What::Attack(_) => {}
            other => self.log(1, format_args!("{other:?}")),
        }
        match what {
            What::Start { node, behind } => self.start(node, behind),
            What::Fault(fault) => self.fault(fault),
            What::Resume { node, generation } => self.resume(node, generation),
            What::Attack(k) => self.attack(k),
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
                        let slot = &self.slots[i];
                        if slot.node.is_none() && slot.exited.is_none() && !slot.dead {
                            self.start(i, slot.behind)?;
                        }
                    }
                }
                Ok(())
            }
            What::Mend => {
                self.cut = None;
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
                let result = if j < self.s.peers && self.slots[j].generation > 0 {
                    Ok(vec![self.primary(j)])
                } else {
                    Err("Name or service not known".to_string())
                };
                self.feed(node, Queued::Resolved { peer, result })
            }
            What::Deliver(f) => self.feed(f.to, Queued::Datagram(f, self.now)),
        }
    }

    fn fault(&mut self, fault: Fault) -> Result<(), Failure> {
        match fault {
            Fault::Crash {
                node,
                restart,
                behind,
            } => {
                let slot = &mut self.slots[node];
                if restart.is_none() && slot.exited.is_none() {
                    slot.dead = true;
                }
                slot.paused = None;
                if slot.node.take().is_some() {
                    slot.behind = behind;
                    self.deadlines[node] = None;
                    if let Some(back) = restart {
                        let t = self.now + back;
                        self.settle_at(t);
                        self.at(t, What::Start { node, behind });
                    }
                }
            }
            Fault::Pause { node, duration } => {
                let slot = &mut self.slots[node];
                if slot.node.is_some() && slot.paused.is_none() {
                    slot.paused = Some(Paused {
                        since: self.now,
                        queue: VecDeque::new(),
                        datagrams: 0,
                    });
                    let generation = slot.generation;
                    self.deadlines[node] = None;
                    let t = self.now + duration;
                    self.settle_at(t);
                    self.at(t, What::Resume { node, generation });
                }
            }
            Fault::Cut { group, duration } => {
                self.cut = Some(group);
                let t = self.now + duration;
                self.settle_at(t);
                self.at(t, What::Mend);
            }
            attack @ Fault::Attack { .. } => {
                let what = self.what_of(attack);
                self.happen(what)?;
            }
        }
        Ok(())
    }

    fn start(&mut self, i: usize, behind: bool) -> Result<(), Failure> {
        let slot = &self.slots[i];
        if slot.node.is_some() || slot.exited.is_some() || slot.dead {
            return Ok(());
        }
        // Incarnations are start times; a clock that is behind gives a
        // lower one than the last start's.
        let fresh = EPOCH_MICROS + self.now.duration_since(self.t0).as_micros() as u64;
        let mut incarnation = if behind && slot.incarnation > 2 {
            let most = (slot.incarnation - 2).min(3_600_000_000);
            slot.incarnation - 1 - self.rng.range(0, most)
        } else {
            fresh
        };
        while slot.incarnations.contains(&incarnation) {
            incarnation = if behind {
                incarnation - 1
            } else {
                incarnation + 1
            };
        }
        let seed = self.rng.next_u64();
        let params = self.s.params();
        let slot = &mut self.slots[i];
        slot.generation += 1;
        slot.behind = false;
        slot.incarnation = incarnation;
        slot.incarnations.push(incarnation);
        slot.started_at = Some(self.now);
        slot.ready_at = None;
        slot.done = None;
        slot.passed = false;
        slot.paused = None;
        slot.paused_total = Duration::ZERO;
        slot.warnings.clear();
        slot.node = Some(Node::new(
            &slot.entries,
            i,
            slot.hosts,
            incarnation,
            seed,
            params,
        ));
        self.latest_start = self.now;
        self.log(
            1,
            format_args!("node {i} starts, incarnation {incarnation}"),
        );
        self.heard[i].fill(Heard::default());
        self.told[i].fill(None);
        self.input(i, Input::Start)
    }

    fn resume(&mut self, i: usize, generation: u32) -> Result<(), Failure> {
        let slot = &mut self.slots[i];
        if slot.generation != generation || slot.node.is_none() {
            return Ok(());
        }
        let Some(paused) = slot.paused.take() else {
            return Ok(());
        };
        slot.paused_total += self.now - paused.since;
        for queued in paused.queue {
            self.read(i, queued)?;
        }
        self.input(i, Input::Tick)
    }

    /// Hands something to node `i`: at once, or when it resumes.
    fn feed(&mut self, i: usize, queued: Queued) -> Result<(), Failure> {
        let slot = &mut self.slots[i];
        if slot.node.is_none() {
            return Ok(());
        }
        if let Some(p) = &mut slot.paused {
            if let Queued::Datagram(..) = queued {
                if p.datagrams >= SOCKET_BUFFER {
                    self.lost += 1;
                    return Ok(());
                }
                p.datagrams += 1;
            }
            p.queue.push_back(queued);
            return Ok(());
        }
        self.read(i, queued)
    }

    fn read(&mut self, i: usize, queued: Queued) -> Result<(), Failure> {
        match queued {
            Queued::Datagram(f, arrived) => self.receive(f, arrived),
            Queued::Resolved { peer, result } => {
                let j = usize::from(peer - 1);
                if let Ok(addrs) = &result
                    && j < self.s.peers
                {
                    self.told[i][j] = addrs.first().copied();
                }
                self.input(i, Input::Resolved { peer, result })
            }
        }
    }

    fn receive(&mut self, f: InFlight, arrived: Instant) -> Result<(), Failure> {
        if self.slots[f.to].node.is_none() {
            return Ok(());
        }
        self.delivered += 1;
        let message = wire::decode(f.datagram.as_bytes(), self.key.as_ref());
        // A replay of the sender's current incarnation is no more than a
        // late copy; one of an earlier incarnation is never evidence.
        let genuine = match f.origin {
            Origin::Network => true,
            Origin::Replay => f.generation == self.slots[f.from].generation,
            Origin::Forged => false,
        };
        if genuine && let Ok(m) = &message {
            self.record(&f, m);
        }
        self.input(
            f.to,
            Input::Datagram {
                from: f.src,
                message,
                arrived,
            },
        )
    }

    /// The simulator's own account of what `f.to` got from `f.from`.
    /// Node `i` took a newer incarnation (a peer knew one of its entry
    /// newer than its own, its clock being behind): from now on only
    /// acknowledgements echoing the new one count for it.
    fn reincarnated(&mut self, i: usize, incarnation: u64) {
        let slot = &mut self.slots[i];
        slot.incarnation = incarnation;
        slot.incarnations.push(incarnation);
        for h in &mut self.heard[i] {
            for g in &mut h.generations {
                g.ack = false;
            }
        }
    }

    fn record(&mut self, f: &InFlight, m: &Message) {
        let (to, from) = (f.to, f.from);
        let receiver = &self.slots[to];
        if m.hosts != receiver.hosts
            || usize::from(m.from) != from + 1
            || usize::from(m.to) != to + 1
        {
            return;
        }
        let strict = self.must_believe(to, from, f.src);
        // With a secret, the MAC proves the sender whatever the source.
        if !strict && !self.s.secret {
            return;
        }
        let me = receiver.incarnation;
        let done_seq = receiver.done.and_then(|d| d.seq);
        let h = &mut self.heard[to][from];
        if strict {
            h.latest = h.latest.max(m.incarnation);
            h.newest = h.newest.max(f.generation);
        }
        let k = match h
            .generations
            .iter()
            .position(|g| g.incarnation == m.incarnation)
        {
            Some(k) => k,
            None => {
                h.generations.push(FromGeneration {
                    incarnation: m.incarnation,
                    generation: f.generation,
                    heartbeat: false,
                    ack: false,
                    last: self.now,
                });
                h.generations.len() - 1
            }
        };
        let g = &mut h.generations[k];
        g.last = self.now;
        if m.kind == Kind::Heartbeat {
            g.heartbeat = true;
        }
        // An acknowledgement, alone or riding on a heartbeat.
        if let Some((echo, acked)) = m.ack()
            && echo == me
        {
            g.ack = true;
            if done_seq.is_some_and(|seq| acked >= seq) {
                h.confirmed = true;
            }
        }
    }

    fn input(&mut self, i: usize, input: Input) -> Result<(), Failure> {
        let Some(node) = self.slots[i].node.as_mut() else {
            return Ok(());
        };
        let mut out = Vec::new();
        node.transition(input, self.now, &mut out);
        self.deadlines[i] = node.next_deadline();
        if node.peers.len() != self.s.peers - 1 && self.s.other_hosts != Some(i)
            || node.peers.iter().any(|p| p.addrs().len() > MAX_ADDRS)
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
                self.log(2, format_args!("node {i} sends to {to}: {message:?}"));
                self.send(i, to, message)
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
                Ok(())
            }
            Action::Ready => self.ready(i),
            Action::Event(e) => {
                // Every event must render.
                let text = e.to_string();
                self.log(1, format_args!("node {i}: {text}"));
                match e {
                    Event::Dropping { .. } | Event::Mismatch { .. } => self.warning(i, &text)?,
                    Event::AllReady { .. } => self.slots[i].passed = true,
                    Event::Reincarnated { incarnation, .. } => self.reincarnated(i, incarnation),
                    _ => {}
                }
                Ok(())
            }
            Action::Exit(reason) => self.exit(i, reason),
            // The simulated nodes run no command.
            Action::StartJob | Action::SignalJob(_) => {
                Err(self.fail(format!("node {i} was asked to run a command")))
            }
        }
    }

    fn send(&mut self, i: usize, to: SocketAddr, message: Message) -> Result<(), Failure> {
        // A process that died in the middle of a transition sends no more.
        if self.slots[i].node.is_none() {
            self.lost += 1;
            return Ok(());
        }
        if message.flags.done {
            self.said_done(i, &message)?;
        }
        let Some(j) = self.index_of(to) else {
            self.lost += 1;
            return Ok(());
        };
        let apart = |g: &Option<Vec<bool>>| g.as_ref().is_some_and(|g| g[i] != g[j]);
        let cut = apart(&self.split) || apart(&self.cut);
        let lossy = !self.healed;
        if cut || (lossy && self.rng.chance(self.s.loss)) {
            self.lost += 1;
            return Ok(());
        }
        let datagram = wire::encode(&message, self.key.as_ref());
        let generation = self.slots[i].generation;
        for a in &mut self.attacks {
            if a.posing_as == i && a.target == j {
                let of_generation = a.captured.iter().filter(|c| c.0 == generation).count();
                if of_generation < 8 {
                    a.captured.push((generation, datagram));
                }
            }
        }
        let copies = if lossy && self.rng.chance(self.s.duplicate) {
            2
        } else {
            1
        };
        // A dual-stack host sends from its address of the destination's
        // family.
        let src = self.addr_in(i, to.is_ipv6());
        for _ in 0..copies {
            let delay = self.rng.duration(self.s.max_delay);
            self.at(
                self.now + delay,
                What::Deliver(InFlight {
                    from: i,
                    generation,
                    to: j,
                    src,
                    datagram,
                    origin: Origin::Network,
                }),
            );
        }
        Ok(())
    }

    fn said_done(&mut self, i: usize, message: &Message) -> Result<(), Failure> {
        let now = self.now;
        let slot = &mut self.slots[i];
        slot.passed = true;
        let first = slot.done.is_none();
        let done = slot.done.get_or_insert(Done {
            at: now,
            paused: slot.paused_total,
            seq: None,
        });
        if message.kind == Kind::Heartbeat && done.seq.is_none() {
            done.seq = Some(message.seq);
        }
        if first {
            self.log(1, format_args!("node {i} says DONE"));
            self.first_done.get_or_insert(now);
            self.trigger(|w| matches!(w, When::Done { node, .. } if *node == i))?;
        }
        Ok(())
    }

    /// Fires the faults waiting for what just happened.
    fn trigger(&mut self, fired: impl Fn(&When) -> bool) -> Result<(), Failure> {
        let mut k = 0;
        while k < self.triggers.len() {
            if !fired(&self.triggers[k].0) {
                k += 1;
                continue;
            }
            let (when, what) = self.triggers.remove(k);
            let after = match when {
                When::At(t) => t,
                When::Ready { after, .. } | When::Done { after, .. } => after,
            };
            if after.is_zero() {
                self.happen(what)?;
            } else {
                self.at(self.now + after, what);
            }
        }
        Ok(())
    }

    /// The next datagram of an attack: the kinds of bad datagram in turn,
    /// from the listed address of the peer it poses as.
    fn attack(&mut self, k: usize) -> Result<(), Failure> {
        let a = &mut self.attacks[k];
        if a.sent == 0 {
            a.until += self.now - self.t0;
        }
        a.sent += 1;
        let (target, posing_as, n) = (a.target, a.posing_as, a.sent);
        if self.now + a.every < a.until {
            let next = self.now + a.every;
            self.at(next, What::Attack(k));
        }
        let current = self.slots[posing_as].generation;
        let a = &self.attacks[k];
        let earlier: Vec<&(u32, wire::Datagram)> =
            a.captured.iter().filter(|c| c.0 < current).collect();
        let replay = if earlier.is_empty() {
            a.captured.get(n as usize % a.captured.len().max(1))
        } else {
            Some(earlier[n as usize % earlier.len()])
        }
        .copied();
        let forged = Message {
            kind: if n.is_multiple_of(2) {
                Kind::Heartbeat
            } else {
                Kind::Ack
            },
            flags: Flags {
                ready: true,
                done: true,
                barrier: true,
            },
            ask: true,
            hosts: self.slots[target].hosts,
            from: posing_as as u16 + 1,
            to: target as u16 + 1,
            incarnation: self.slots[posing_as].incarnation + 1,
            seq: n,
            echo: self.slots[target].incarnation,
            acked: n,
        };
        let guess = Key::from_secret(b"an attacker's guess");
        let wrong_hosts = Message {
            hosts: forged.hosts ^ 1,
            ..forged
        };
        // In turn: another hosts list, no MAC where a secret is set, a MAC
        // where none is (with a secret: a bad MAC), a replay.
        let kinds = if self.s.secret { 4 } else { 3 };
        let forge = |m: &Message, key: Option<&Key>| (wire::encode(m, key), 0, Origin::Forged);
        let secret = self.s.secret;
        let (datagram, generation, origin) = match (n % kinds, replay) {
            (0, _) => forge(&wrong_hosts, secret.then_some(&guess)),
            (1, _) if secret => forge(&forged, None),
            (1, _) => forge(&forged, Some(&guess)),
            (2, _) if secret => forge(&forged, Some(&guess)),
            (_, Some((generation, datagram))) => (datagram, generation, Origin::Replay),
            (_, None) => forge(&wrong_hosts, secret.then_some(&guess)),
        };
        let f = InFlight {
            from: posing_as,
            generation,
            to: target,
            src: self.primary(posing_as),
            datagram,
            origin,
        };
        self.feed(target, Queued::Datagram(f, self.now))
    }

    fn ready(&mut self, i: usize) -> Result<(), Failure> {
        if self.slots[i].ready_at.is_some() {
            return Err(self.fail(format!("node {i} announced READY twice")));
        }
        if self.s.other_hosts.is_some() {
            return Err(self.fail(format!(
                "node {i} announced READY although a peer reads another hosts list"
            )));
        }
        let silence = self.s.silence();
        for j in (0..self.s.peers).filter(|&j| j != i) {
            let h = &self.heard[i][j];
            let exchanged: Vec<&FromGeneration> = h
                .generations
                .iter()
                .filter(|g| g.incarnation >= h.latest || g.generation >= h.newest)
                .filter(|g| g.heartbeat && g.ack)
                .collect();
            if exchanged.is_empty() {
                let g = h.generations.iter().find(|g| g.incarnation == h.latest);
                return Err(self.fail(format!(
                    "node {i} announced READY without a heartbeat ({}) and an acknowledgement ({}) from the latest incarnation ({}, process {}) of node {j} that reached it",
                    g.is_some_and(|g| g.heartbeat),
                    g.is_some_and(|g| g.ack),
                    h.latest,
                    g.map_or(0, |g| g.generation)
                )));
            }
            if let Some(last) = exchanged.iter().map(|g| g.last).max()
                && self.now - last > silence
            {
                return Err(self.fail(format!(
                    "node {i} announced READY although node {j} was last heard {:?} before, more than {SILENT_INTERVALS} intervals of {:?}: node {j} is {}",
                    self.now - last,
                    self.s.interval,
                    self.condition(j)
                )));
            }
        }
        self.log(1, format_args!("node {i} READY"));
        let slot = &mut self.slots[i];
        slot.ready_at = Some(self.now);
        slot.ever_ready = true;
        self.trigger(|w| matches!(w, When::Ready { node, .. } if *node == i))
    }

    /// What node `j` is doing, for a message.
    fn condition(&self, j: usize) -> String {
        let slot = &self.slots[j];
        if slot.dead {
            "crashed for good".into()
        } else if let Some(p) = &slot.paused {
            format!("paused for {:?}", self.now - p.since)
        } else if slot.exited.is_some() {
            "gone".into()
        } else if slot.node.is_none() {
            "down".into()
        } else {
            "up".into()
        }
    }

    fn warning(&mut self, i: usize, text: &str) -> Result<(), Failure> {
        let now = self.now;
        let w = &mut self.slots[i].warnings;
        while w.front().is_some_and(|&t| now - t >= WARNING_WINDOW) {
            w.pop_front();
        }
        w.push_back(now);
        if w.len() > MAX_WARNINGS {
            let n = w.len();
            return Err(self.fail(format!(
                "node {i} raised {n} warnings within {WARNING_WINDOW:?}, more than {MAX_WARNINGS}; the last: {text}"
            )));
        }
        Ok(())
    }

    fn exit(&mut self, i: usize, reason: Reason) -> Result<(), Failure> {
        let slot = &self.slots[i];
        let started = slot.started_at.expect("a node exits after its start");
        let passed = matches!(reason, Reason::BarrierComplete | Reason::BarrierLingered);
        if passed && !self.s.barrier {
            return Err(self.fail(format!("node {i} exited with {reason:?} without --barrier")));
        }
        if matches!(
            reason,
            Reason::TimeoutAfterReady(_) | Reason::TimeoutBeforeReady(_)
        ) && self.now < started + self.s.timeout
        {
            return Err(self.fail(format!(
                "node {i} exited with {reason:?} {:?} after its start, before its timeout",
                self.now - started
            )));
        }
        if reason.exit() == Exit::Ready {
            if self.s.barrier {
                let never: Vec<usize> = (0..self.s.peers)
                    .filter(|&j| j != i && !self.slots[j].ever_ready)
                    .collect();
                if !never.is_empty() {
                    return Err(self.fail(format!(
                        "node {i} exited 0 ({reason:?}) with --barrier while {never:?} had never announced READY: before the barrier passes, the exit is 124"
                    )));
                }
                if !slot.passed {
                    return Err(self.fail(format!(
                        "node {i} exited 0 ({reason:?}) with --barrier without passing it (it never said that every peer is READY, nor DONE): before the barrier passes, the exit is 124"
                    )));
                }
            } else if slot.ready_at.is_none() {
                return Err(self.fail(format!("node {i} exited 0 ({reason:?}) without READY")));
            }
        }
        if reason == Reason::BarrierComplete {
            let unconfirmed: Vec<usize> = (0..self.s.peers)
                .filter(|&j| j != i && !self.heard[i][j].confirmed)
                .collect();
            if !unconfirmed.is_empty() {
                return Err(self.fail(format!(
                    "node {i} completed the barrier, but {unconfirmed:?} never acknowledged a heartbeat of its that carried DONE"
                )));
            }
        }
        if let Some(done) = slot.done {
            let lingered = self.now - done.at - (slot.paused_total - done.paused);
            if lingered > self.s.interval {
                return Err(self.fail(format!(
                    "node {i} exited ({reason:?}) {lingered:?} after it said DONE: it lingers at most one interval ({:?})",
                    self.s.interval
                )));
            }
        }
        self.log(1, format_args!("node {i} exits: {reason:?}"));
        let slot = &mut self.slots[i];
        slot.exited = Some((self.now, reason));
        slot.node = None;
        slot.paused = None;
        self.deadlines[i] = None;
        Ok(())
    }

    fn check_end(&self) -> Result<(), Failure> {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.node.is_some()
                && slot.paused.is_none()
                && slot
                    .started_at
                    .is_some_and(|t| t + self.s.timeout < self.now)
            {
                return Err(self.fail(format!("node {i} runs past its timeout")));
            }
        }
        // Liveness holds once every peer is up for good and nobody's
        // timeout falls inside the run.
        if self.s.other_hosts.is_some() || self.s.timeout < DAY || self.slots.iter().any(|s| s.dead)
        {
            return Ok(());
        }
        // With --barrier, a node that said DONE before the network settled
        // lingers at most an interval, and may leave before any of its
        // DONE got through: whoever was cut off from it can only be READY
        // (and leaves at its timeout with 124). Once a node said DONE (it
        // may have counted an earlier incarnation's READY), it leaves: a
        // process not READY by then may never be.
        let early = self.slots.iter().any(|s| {
            s.exited.is_some_and(|(_, r)| r.exit() == Exit::Ready)
                && s.done.is_some_and(|d| d.at < self.settle)
        });
        let mut late = String::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let ok = if self.s.barrier {
                slot.exited.is_some_and(|(_, r)| r.exit() == Exit::Ready)
                    || (early && slot.ready_at.is_some())
                    || (self.first_done.is_some() && slot.ready_at.is_none())
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
                "nodes{late} not {} {:?} after the network settled",
                if self.s.barrier {
                    "through the barrier"
                } else {
                    "READY"
                },
                self.now - self.settle
            )))
        }
    }

    fn fail(&self, message: String) -> Failure {
        let scenario = format!("{:?}", self.s);
        Failure {
            seed: self.s.seed,
            from_seed: scenario == format!("{:?}", Scenario::from_seed(self.s.seed)),
            message: format!("{message} at {:?}; {scenario}", self.now - self.t0),
        }
    }
}

/// Node `i`'s address in one family, for the `generation`-th address it
/// has had.
fn address(i: usize, v6: bool, generation: u32) -> SocketAddr {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            0,
            0,
            0,
            generation as u16,
            i as u16,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, generation as u8, (i >> 8) as u8, i as u8))
    };
    SocketAddr::new(ip, PORT)
}

/// The hosts list of a run: `variant` 1 is another list, with one more
/// entry.
fn entries(s: &Scenario, variant: usize) -> Vec<Entry> {
    let mut text = String::new();
    for i in 0..s.peers + variant {
        if s.names {
            let _ = writeln!(text, "peer{}", i + 1);
        } else {
            let v6 = s.ipv6.get(i).copied().unwrap_or(false);
            let _ = writeln!(text, "{}", address(i, v6, 1));
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
    let mut times: Vec<(Duration, u64, usize, Option<u64>)> = (1..300)
        .map(|seed| {
            let t = Instant::now();
            let s = Scenario::from_seed(seed);
            let peers = s.peers;
            let steps = Sim::new(s).run().ok().map(|sim| sim.steps);
            (t.elapsed(), seed, peers, steps)
        })
        .collect();
    times.sort();
    let total: Duration = times.iter().map(|t| t.0).sum();
    println!("total {total:?}");
    for t in times.iter().rev().take(10) {
        println!("{t:?}");
    }
}

/// What a run came to, to compare two runs.
fn outcome(s: Scenario) -> String {
    match Sim::new(s).run() {
        Ok(sim) => format!(
            "passed: {} delivered, {} lost, {} steps",
            sim.delivered, sim.lost, sim.steps
        ),
        Err(f) => f.to_string(),
    }
}

#[test]
fn the_same_seed_replays_the_same_run() {
    for seed in [3, 17, 99, 1234] {
        let a = outcome(Scenario::from_seed(seed));
        assert_eq!(a, outcome(Scenario::from_seed(seed)));
        assert!(!a.contains(" 0 delivered"), "{a}");
    }
}

/// A run without faults: every node starts at once, nothing is lost, the
/// network is quick. Tests add the fault they are about.
fn quiet(peers: usize) -> Scenario {
    Scenario {
        seed: 1,
        peers,
        barrier: false,
        interval: Duration::from_millis(200),
        names: false,
        secret: false,
        loss: 0.0,
        duplicate: 0.0,
        max_delay: Duration::from_millis(1),
        partitions: false,
        crashes: false,
        clock_behind: false,
        crash_for_good: false,
        pauses: false,
        attack: false,
        ipv6: vec![false; peers],
        other_hosts: None,
        heal: Duration::ZERO,
        timeout: DAY,
        late: (0..peers).map(|i| (i, Duration::ZERO)).collect(),
        script: Vec::new(),
    }
}

fn pass(s: Scenario) -> Sim {
    Sim::new(s).run().unwrap_or_else(|f| panic!("{f}"))
}

/// Seeds `1..=count` with knobs set by `knobs`, on at most six peers.
fn sweep(count: u64, knobs: impl Fn(&mut Scenario)) {
    for seed in 1..=count {
        let mut s = Scenario::from_seed(seed);
        s.peers = s.peers.min(6);
        s.ipv6.truncate(s.peers);
        s.other_hosts = None;
        knobs(&mut s);
        pass(s);
    }
}

fn exit_of(sim: &Sim, i: usize) -> Option<Exit> {
    sim.slots[i].exited.map(|(_, r)| r.exit())
}

const MS: Duration = Duration::from_millis(1);

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
    s.clock_behind = true;
    s.pauses = true;
    s.attack = true;
    s.ipv6 = (0..16usize).map(|i| i.is_multiple_of(3)).collect();
    s.other_hosts = None;
    s.crash_for_good = false;
    s.timeout = DAY;
    s.heal = Duration::from_secs(10);
    let sim = pass(s);
    assert!(sim.lost > 0 && sim.delivered > 0);
}

#[test]
fn the_checker_catches_a_node_that_reads_another_list() {
    // Its peers must never be READY: the run passes only because nobody
    // announces READY, which the checker verifies on every announcement.
    let mut s = Scenario::from_seed(11);
    s.peers = 4;
    s.ipv6.truncate(4);
    s.other_hosts = Some(2);
    s.crashes = false;
    let sim = pass(s);
    assert!(sim.slots.iter().all(|slot| slot.ready_at.is_none()));
}

#[test]
fn crashes_and_pauses_around_ready_and_done_keep_the_barrier() {
    sweep(40, |s| {
        s.barrier = true;
        s.crashes = true;
        s.pauses = true;
    });
}

#[test]
fn pauses_longer_than_the_silence_threshold_hold_ready_back() {
    sweep(40, |s| s.pauses = true);
}

#[test]
fn crashes_for_good_end_every_run_with_the_right_exit() {
    sweep(40, |s| {
        s.crash_for_good = true;
        s.barrier = s.seed.is_multiple_of(2);
        s.timeout = s.heal + s.interval * 6;
    });
}

#[test]
fn restarts_with_the_clock_behind_are_exchanged_with() {
    sweep(40, |s| {
        s.crashes = true;
        s.clock_behind = true;
        s.secret = s.seed.is_multiple_of(2);
    });
}

#[test]
fn attacks_from_listed_addresses_change_nothing() {
    sweep(40, |s| {
        s.attack = true;
        s.heal = s.heal.max(Duration::from_secs(1));
        s.secret = s.seed.is_multiple_of(2);
    });
}

/// The contract (issue): a node may believe a sender on a source address
/// of a family in which it has no listed address for it, on the listed
/// port, or on any source when a secret authenticates it; every such
/// combination must become READY.
#[test]
fn peers_listed_in_both_address_families_become_ready() {
    for names in [false, true] {
        let mut s = quiet(4);
        s.names = names;
        s.ipv6 = vec![false, true, false, true];
        pass(s);
    }
    sweep(40, |s| {
        s.ipv6 = (0..s.peers)
            .map(|i| (i + s.seed as usize).is_multiple_of(2))
            .collect()
    });
}

/// With --barrier a node whose timeout runs out before the barrier passes
/// exits 124 even when it is READY: here a peer dies for good after the
/// others exchanged with it, before it is READY itself.
#[test]
fn with_the_barrier_a_timeout_before_it_passes_exits_124() {
    let mut seen = 0;
    for seed in 1..=20 {
        let mut s = quiet(3);
        s.seed = seed;
        s.barrier = true;
        s.max_delay = MS * 5;
        s.late = vec![(0, MS * 1000), (1, MS * 1000), (2, Duration::ZERO)];
        s.heal = MS * 1000;
        s.timeout = MS * 2000;
        s.script = vec![(
            When::Ready {
                node: 0,
                after: Duration::ZERO,
            },
            Fault::Crash {
                node: 2,
                restart: None,
                behind: false,
            },
        )];
        let sim = pass(s);
        if !sim.slots[2].ever_ready {
            seen += 1;
            assert_eq!(exit_of(&sim, 0), Some(Exit::Timeout));
            assert_eq!(exit_of(&sim, 1), Some(Exit::Timeout));
        }
    }
    assert!(seen > 0, "no run had the peer die before its READY");
}

#[test]
fn no_ready_while_a_peer_is_crashed_for_good() {
    let mut s = quiet(3);
    s.late[1].1 = MS * 2000;
    s.heal = MS * 2000;
    s.timeout = MS * 3000;
    s.script = vec![(
        When::At(MS * 500),
        Fault::Crash {
            node: 2,
            restart: None,
            behind: false,
        },
    )];
    let sim = pass(s);
    assert_eq!(exit_of(&sim, 0), Some(Exit::Timeout));
    assert_eq!(exit_of(&sim, 1), Some(Exit::Timeout));
}

#[test]
fn no_ready_on_peers_that_left_longer_ago_than_the_threshold() {
    // Nodes 1 and 2 are READY at node 0's start and leave at their
    // timeout; node 3, cut off meanwhile, is exchanged with only later,
    // when their leaves are 800 ms old against a threshold of 500: node 0
    // must not take them for present (seed 0xf56a5e2ce839f346 of the soak).
    let mut s = quiet(4);
    s.timeout = MS * 1500;
    s.late[3].1 = MS * 990;
    s.late[0].1 = MS * 1000;
    s.heal = MS * 2300;
    s.script = vec![(
        When::At(MS * 995),
        Fault::Cut {
            group: vec![false, false, false, true],
            duration: MS * 1305,
        },
    )];
    let sim = pass(s);
    for i in [1, 2] {
        assert!(sim.slots[i].ever_ready, "node {i} was READY");
        assert_eq!(exit_of(&sim, i), Some(Exit::Ready));
    }
    assert!(!sim.slots[0].ever_ready);
    assert_eq!(exit_of(&sim, 0), Some(Exit::Timeout));
}

#[test]
fn no_ready_while_a_peer_is_paused() {
    let mut s = quiet(3);
    s.late[1].1 = MS * 2000;
    s.heal = MS * 2000;
    s.script = vec![(
        When::At(MS * 500),
        Fault::Pause {
            node: 2,
            duration: MS * 3000,
        },
    )];
    let sim = pass(s);
    for slot in &sim.slots {
        assert!(slot.ready_at.is_some_and(|t| t >= sim.t0 + MS * 3500));
    }
}

fn restart_with_the_clock_behind(secret: bool) {
    let mut s = quiet(3);
    s.secret = secret;
    s.heal = MS * 1010;
    s.script = vec![(
        When::At(MS * 1000),
        Fault::Crash {
            node: 2,
            restart: Some(MS * 10),
            behind: true,
        },
    )];
    let sim = pass(s);
    // The restart started below the first process's incarnation, and was
    // told to take one above it.
    let incarnations = &sim.slots[2].incarnations;
    assert_eq!(incarnations.len(), 3, "{incarnations:?}");
    assert!(incarnations[1] < incarnations[0] && incarnations[2] > incarnations[0]);
}

#[test]
fn a_peer_restarted_with_its_clock_behind_is_exchanged_with_again() {
    restart_with_the_clock_behind(false);
}

#[test]
fn a_peer_restarted_with_its_clock_behind_is_exchanged_with_again_with_a_secret() {
    restart_with_the_clock_behind(true);
}

/// An attacker alternating kinds of bad datagram, replays among them, from
/// a peer's listed address: warnings stay bounded, and the cluster becomes
/// READY through the real exchange.
fn attacked(secret: bool) {
    let mut s = quiet(3);
    s.secret = secret;
    s.heal = MS * 2200;
    s.script = vec![
        (
            When::At(MS * 50),
            Fault::Crash {
                node: 1,
                restart: Some(MS * 10),
                behind: false,
            },
        ),
        (
            When::At(MS * 100),
            Fault::Attack {
                target: 0,
                posing_as: 1,
                every: MS * 2,
                duration: MS * 2000,
            },
        ),
    ];
    let sim = pass(s);
    assert!(sim.attacks[0].sent > 900);
}

#[test]
fn warnings_stay_bounded_under_attack() {
    attacked(false);
}

#[test]
fn warnings_stay_bounded_under_attack_with_a_secret() {
    attacked(true);
}

/// A peer restarts, then dies for good; replays of its first incarnation
/// go on: they never make a node READY.
fn replays_of_the_dead(secret: bool) {
    let mut s = quiet(3);
    s.secret = secret;
    s.late[1].1 = MS * 3000;
    s.heal = MS * 3000;
    s.timeout = MS * 5000;
    let crash = |restart| Fault::Crash {
        node: 2,
        restart,
        behind: false,
    };
    s.script = vec![
        (When::At(MS * 500), crash(Some(MS * 100))),
        (When::At(MS * 1500), crash(None)),
        (
            When::At(MS * 600),
            Fault::Attack {
                target: 0,
                posing_as: 2,
                every: MS * 5,
                duration: MS * 3000,
            },
        ),
    ];
    let sim = pass(s);
    assert_eq!(exit_of(&sim, 0), Some(Exit::Timeout));
}

#[test]
fn replays_of_an_earlier_incarnation_never_count_as_hearing_it() {
    replays_of_the_dead(false);
}

#[test]
fn replays_of_an_earlier_incarnation_never_count_as_hearing_it_with_a_secret() {
    replays_of_the_dead(true);
}

/// Both nodes back off to the interval while cut off from each other;
/// then the first datagrams after the first READY are lost. The READY is
/// news: it goes out again from a twentieth of the interval, not from the
/// backoff reached before, so the barrier passes well within the interval.
#[test]
fn a_lost_ready_is_retransmitted_from_well_below_the_interval() {
    let mut s = quiet(2);
    s.barrier = true;
    s.interval = Duration::from_secs(2);
    s.late = vec![(0, MS), (1, MS)];
    s.heal = MS;
    s.script = vec![
        (
            When::At(Duration::ZERO),
            Fault::Cut {
                group: vec![true, false],
                duration: Duration::from_secs(10),
            },
        ),
        (
            When::Ready {
                node: 0,
                after: Duration::ZERO,
            },
            Fault::Cut {
                group: vec![true, false],
                duration: MS * 20,
            },
        ),
    ];
    let interval = s.interval;
    let sim = pass(s);
    let last_ready = sim.slots.iter().filter_map(|s| s.ready_at).max().unwrap();
    for (i, slot) in sim.slots.iter().enumerate() {
        let (at, reason) = slot.exited.expect("every node passes the barrier");
        assert!(
            at <= last_ready + interval / 4,
            "node {i} left {:?} after the last READY ({reason:?})",
            at - last_ready
        );
    }
}

/// A node that said DONE waits for its peers' confirmations at most one
/// interval: here a peer stops the moment the first DONE goes out.
#[test]
fn a_node_that_passed_the_barrier_lingers_at_most_one_interval() {
    let mut s = quiet(3);
    s.barrier = true;
    s.script = vec![(
        When::Done {
            node: 0,
            after: Duration::ZERO,
        },
        Fault::Pause {
            node: 2,
            duration: s.interval * 5,
        },
    )];
    let sim = pass(s);
    assert!(matches!(
        sim.slots[0].exited,
        Some((_, Reason::BarrierLingered))
    ));
}

#[test]
fn the_barrier_completes_once_every_peer_confirmed() {
    let mut s = quiet(4);
    s.barrier = true;
    let sim = pass(s);
    // A peer that completed and left cannot confirm a DONE it hears after:
    // the others may linger; whoever completes had every confirmation
    // (checked on every exit).
    assert!(sim.slots.iter().all(|slot| matches!(
        slot.exited,
        Some((_, Reason::BarrierComplete | Reason::BarrierLingered))
    )));
    assert!(
        sim.slots
            .iter()
            .any(|slot| matches!(slot.exited, Some((_, Reason::BarrierComplete))))
    );
}

/// `ROLLCALL_SIM_SEED=0x2a cargo test --lib sim::replay -- --ignored --nocapture`;
/// `ROLLCALL_SIM_TRACE=1` (or 2, with every datagram) prints the run.
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
    let trace = std::env::var("ROLLCALL_SIM_TRACE").map_or(0, |t| t.parse().unwrap_or(1));
    match Sim::new(s).traced(trace).run() {
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

/// Seeds a soak found failing, kept so that they stay fixed.
#[test]
fn seeds_that_once_failed() {
    // Two processes of one entry restarted behind the clock, one after the
    // other, were told the same incarnation and took the same one: a peer
    // that had heard the first took the second's heartbeats for replays.
    pass(Scenario::from_seed(0x944d_d340_eee4_707b));
    // A restarted process heard a peer (with a secret, from an address
    // not resolved yet) that did not ask for an answer, since it took the
    // process for its previous one: the process never asked it in turn.
    pass(Scenario::from_seed(0xaf2b_2df8_50d1_e069));
    // READY on the leaves of peers gone for longer than the threshold.
    pass(Scenario::from_seed(0xf56a_5e2c_e839_f346));
    // A peer restarted behind the clock, exchanged with by a node that
    // never believed its previous process: an exchange with its current
    // incarnation, which the checker took for an earlier one.
    pass(Scenario::from_seed(0x9dd1_4639_544f_fffa));
}
