//! The protocol, as a pure state machine.
//!
//! Everything about heartbeats, acknowledgements, retransmission, restarts
//! and READY is decided here and nowhere else. The machine owns no socket,
//! reads no clock and draws no randomness of its own: the driver hands it
//! one [`Input`] at a time with the current [`Instant`], and it answers
//! with [`Action`]s (send this, resolve that, announce READY, log this,
//! exit) and with its next deadline ([`Node::next_deadline`]). Its jitter
//! comes from a generator seeded by the driver, so a seed replays a run.
//!
//! A node moves forward through its [`State`]s and never back:
//!
//! ```text
//!  Discovering ──all addresses known──▶ Exchanging ──exchanged with all──▶ Ready
//!       │                                   │                               │
//!       └──────── timeout, signal ──────────┴──── timeout, signal, barrier ─┴──▶ Draining ─▶ exit
//! ```
//!
//! Exchanged with a peer means: we received a heartbeat from its current
//! incarnation (and acknowledged it), and it acknowledged one of ours.
//! A restarted peer (a new incarnation) resets that peer's record only; a
//! node that is Ready stays Ready and exchanges with the newcomer.

use std::collections::VecDeque;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Exit;
use crate::hosts::{Entry, Host};
use crate::wire::{DecodeError, Flags, Kind, Message};

mod detector;
mod events;
mod job;
mod membership;
mod peer;
mod retransmit;
mod timers;
mod when;

pub use detector::LEAVE_WAIT;
use detector::Liveness;
pub use events::{Drop, Event, Lookup, Mismatch, Missing, PeerRef, Stats, pretty};
use job::Job;
pub use job::{JobEnd, JobParams, KILL_GRACE};
use peer::{Listed, Peer, Resolution};
use retransmit::{Loss, Pacer, RETRANSMIT_BURST, Rtt};
use timers::{Timer, Timers};
use when::When;

/// How often at most the machine raises a warning about dropped datagrams.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);
/// While not READY (or with `--barrier`, not through it), who is missing
/// is said this often.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// A progress report names at most this many missing peers; the timeout
/// report names them all.
const PROGRESS_NAMES: usize = 8;
/// The least time between two resolutions of one peer's name.
const RESOLVE_MIN_GAP: Duration = Duration::from_millis(250);
/// At most this many addresses are kept for one name.
const MAX_ADDRS: usize = 8;
/// Warnings about one peer's mismatched configuration: at most one per
/// [`DROP_WARNING_EVERY`] for each peer, and at most this many for all
/// peers together, so that no input can make the log grow without bound.
const MISMATCH_WARNINGS: u32 = 4;
/// Mask of the random part of the step above a known incarnation that a
/// process restarted behind the clock takes.
const REINCARNATION_STEP: u64 = (1 << 24) - 1;
/// Answers to datagrams we do not believe (an earlier incarnation, another
/// hosts list), per second: enough for every peer of a real cluster, too
/// few to make the node a reflector.
const REPLIES_PER_SECOND: u32 = 200;

/// What the node is doing. The node moves forward through these states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Some peers' addresses are not known yet: their names do not resolve
    /// yet. Peers already known are heartbeated meanwhile.
    Discovering,
    /// Every address is known; heartbeats or acknowledgements are still
    /// missing from some peers.
    Exchanging,
    /// Exchanged with every peer, READY announced; still answering and
    /// heartbeating until the timeout (or, with `--barrier`, until every
    /// peer is READY too).
    Ready { since: Instant },
    /// A stop was decided. Datagrams are still answered until `until`,
    /// then the node exits for `reason`.
    Draining { until: Instant, reason: Reason },
}

/// The timing of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Heartbeat interval once a peer has acknowledged us; also the cap of
    /// the retransmission and resolution backoffs.
    pub interval: Duration,
    /// Total run time, from [`Input::Start`].
    pub timeout: Duration,
    /// Leave as soon as every peer is READY, instead of at the timeout.
    pub barrier: bool,
    /// Datagrams carry a MAC: an earlier incarnation is then never taken
    /// back, since its datagrams can only be replays.
    pub authenticated: bool,
    /// A command runs after READY (`rollcall -- COMMAND`).
    pub job: Option<JobParams>,
}

impl Params {
    /// First retry to a peer not heard from: well below the interval,
    /// doubling up to it.
    pub fn initial_rto(&self) -> Duration {
        (self.interval / 20).clamp(Duration::from_millis(1), Duration::from_millis(100))
    }

    /// First retry of a name that does not resolve: as quick as a
    /// retransmission, but never below 10 ms, since each try may reach a
    /// DNS server.
    pub fn initial_resolve_backoff(&self) -> Duration {
        self.initial_rto()
            .max(Duration::from_millis(10))
            .min(self.interval)
    }

    /// A peer not heard from for this long is reported silent, and its name
    /// is resolved again.
    pub fn silent_after(&self) -> Duration {
        self.interval * 5 / 2
    }

    /// A peer not heard from for this long has missed a heartbeat (they
    /// come at most an interval apart): it is asked for an answer, on the
    /// round trip, before it can be taken for silent. One lost heartbeat
    /// then costs a round trip, not three intervals of doubt.
    pub fn overdue_after(&self) -> Duration {
        self.interval * 3 / 2
    }

    /// How long a node that has passed the barrier keeps answering.
    pub fn linger(&self) -> Duration {
        self.interval
    }
}

/// Why a node exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The timeout ran out after READY.
    TimeoutAfterReady(Duration),
    /// The timeout ran out before READY.
    TimeoutBeforeReady(Duration),
    /// With `--barrier`: the timeout ran out after READY, before every
    /// peer's READY was heard.
    TimeoutBeforeBarrier(Duration),
    /// Every peer is READY and has said so.
    BarrierComplete,
    /// Every peer is READY; not every peer confirmed within the linger.
    BarrierLingered,
    /// A signal.
    Stopped(Stop),
    /// This process received its own datagram addressed to another entry:
    /// the hosts file lists it twice.
    ListedTwice,
    /// The command run after READY ended.
    JobEnded(JobEnd),
    /// With `--exit-on-down`: a peer went down while the command ran, and
    /// the command was stopped; it ended so.
    PeerDown(JobEnd),
}

impl Reason {
    pub fn exit(self) -> Exit {
        match self {
            Reason::TimeoutAfterReady(_) | Reason::BarrierComplete | Reason::BarrierLingered => {
                Exit::Ready
            }
            Reason::TimeoutBeforeReady(_) | Reason::TimeoutBeforeBarrier(_) => Exit::Timeout,
            Reason::Stopped(stop) => Exit::Signal(stop.0),
            Reason::ListedTwice => Exit::Usage,
            Reason::JobEnded(end) => Exit::Job(end.code()),
            Reason::PeerDown(_) => Exit::PeerDown,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::TimeoutAfterReady(t) => write!(f, "timeout of {} reached", pretty(*t)),
            Reason::TimeoutBeforeReady(t) => {
                write!(f, "timed out after {} before READY", pretty(*t))
            }
            Reason::TimeoutBeforeBarrier(t) => {
                write!(
                    f,
                    "timed out after {} before the barrier passed",
                    pretty(*t)
                )
            }
            Reason::BarrierComplete => write!(f, "barrier complete: every peer is READY"),
            Reason::BarrierLingered => {
                write!(f, "barrier passed: every peer is READY (linger over)")
            }
            Reason::Stopped(stop) => write!(f, "stopped by {}", stop.name()),
            Reason::ListedTwice => f.write_str("this process is listed twice in the hosts file"),
            Reason::JobEnded(end) => write!(f, "{end}"),
            Reason::PeerDown(end) => {
                write!(
                    f,
                    "a peer went down while the command ran (--exit-on-down); {end}"
                )
            }
        }
    }
}

/// A stop request from outside: a signal, by its number, whose default
/// action would end the process, caught so that the process ends cleanly
/// (the ready file removed) with 128 + the number, as shells report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stop(pub u8);

impl Stop {
    pub const INTERRUPT: Stop = Stop(2);
    pub const TERMINATE: Stop = Stop(15);

    /// Its name, for Linux's numbers (x86, Arm and most others; 32 and
    /// above are real-time signals).
    pub fn name(self) -> String {
        const NAMES: [&str; 31] = [
            "SIGHUP",
            "SIGINT",
            "SIGQUIT",
            "SIGILL",
            "SIGTRAP",
            "SIGABRT",
            "SIGBUS",
            "SIGFPE",
            "SIGKILL",
            "SIGUSR1",
            "SIGSEGV",
            "SIGUSR2",
            "SIGPIPE",
            "SIGALRM",
            "SIGTERM",
            "SIGSTKFLT",
            "SIGCHLD",
            "SIGCONT",
            "SIGSTOP",
            "SIGTSTP",
            "SIGTTIN",
            "SIGTTOU",
            "SIGURG",
            "SIGXCPU",
            "SIGXFSZ",
            "SIGVTALRM",
            "SIGPROF",
            "SIGWINCH",
            "SIGIO",
            "SIGPWR",
            "SIGSYS",
        ];
        match usize::from(self.0)
            .checked_sub(1)
            .and_then(|i| NAMES.get(i))
        {
            Some(name) => (*name).into(),
            None => format!("signal {}", self.0),
        }
    }
}

/// One thing that happened to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The node starts: the timeout counts from here.
    Start,
    /// The answer to an [`Action::Resolve`] for the peer with this entry id.
    Resolved {
        peer: u16,
        result: Result<Vec<SocketAddr>, String>,
    },
    /// A datagram arrived from `from`: it reached the socket at
    /// `arrived` (the kernel's receive timestamp, at or before the
    /// transition's `now`; the node may get to it later under load).
    Datagram {
        from: SocketAddr,
        message: Result<Message, DecodeError>,
        arrived: Instant,
    },
    /// A deadline may have passed.
    Tick,
    /// A stop was requested.
    Stop(Stop),
    /// Say now who is missing (SIGUSR1).
    Report,
    /// The command run after READY ended.
    JobEnded(JobEnd),
}

/// One thing the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Send {
        to: SocketAddr,
        message: Message,
    },
    /// Resolve `host` off the loop and answer with [`Input::Resolved`].
    Resolve {
        peer: u16,
        host: String,
        port: u16,
    },
    /// Announce READY. Happens at most once.
    Ready,
    /// Something worth logging.
    Event(Event),
    /// Leave the loop.
    Exit(Reason),
    /// Start the command (once).
    StartJob,
    /// Send this signal to the command.
    SignalJob(u8),
}

/// One peer's view of the cluster: the state machine.
#[derive(Clone, Debug)]
pub struct Node {
    params: Params,
    state: State,
    /// Our entry id, 1-based, as written and its line.
    me: u16,
    own: (String, usize),
    total: usize,
    hosts: u64,
    incarnation: u64,
    /// The others, in entry order.
    peers: Vec<Peer>,
    /// Our last heartbeat sequence number.
    seq: u64,
    /// The first sequence number sent with the current flags.
    epoch: u64,
    flags: Flags,
    started: Option<Instant>,
    finished: bool,
    stats: Stats,
    next_drop_warning: Option<Instant>,
    /// When to say next who is missing.
    next_progress: Option<Instant>,
    /// Warnings about mismatched peers, node-wide.
    mismatch_warnings: Budget,
    /// Answers to datagrams we do not believe.
    replies: Budget,
    /// Retransmissions, all peers together.
    pacer: Pacer,
    /// The round trip to any peer: the estimate for peers not measured yet.
    rtt: Rtt,
    /// Whether our questions have been lost lately.
    loss: Loss,
    /// When we last heard a peer's start heartbeat: peers are still
    /// starting.
    last_start_heard: Option<Instant>,
    /// A peer that passed the barrier while we were not READY.
    passed_without_us: Option<String>,
    /// Every peer's deadlines.
    timers: Timers,
    /// The next round of steady heartbeats.
    round: Option<Instant>,
    /// Peers whose heartbeat is due, and peers that asked for an answer:
    /// what the next `send_due` looks at. (Indices of peers are held in
    /// two bytes: a hosts list has at most 65 535 entries.)
    due: Vec<u16>,
    answers: Vec<u16>,
    /// Peers whose retry waits for a token of the pacer, first come first
    /// served: a transition takes from it only what the pacer allows, so
    /// that a thousand retries waiting cost nothing until their turn.
    paced: VecDeque<u16>,
    /// Peers looked at by `send_due`: what the tests hold against the
    /// datagrams sent, to show the work does not grow with the peers.
    #[cfg(test)]
    examined: u64,
    /// How many peers are in each condition the state depends on.
    counts: Counts,
    /// The command run after READY.
    job: Job,
    /// Our indirect probes awaiting an answer: (request, probed peer).
    indirect: VecDeque<(u64, usize)>,
    /// Leaving: the first sequence number of our leave, which a peer's
    /// acknowledgement must reach, and until when it is sent.
    leaving: Option<(u64, Instant)>,
    /// Peers that have not acknowledged our leave yet.
    leave_waiting: usize,
    rng: u64,
}

/// How many peers are in each condition that moves the state, kept up to
/// date at every change of a peer's record, so that no transition needs to
/// look at every peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    /// No address known yet.
    unresolved: usize,
    exchanged: usize,
    silent: usize,
    /// Said READY.
    ready: usize,
    /// Said DONE.
    done: usize,
    /// Said DONE and acknowledged our current flags.
    confirmed: usize,
}

impl Counts {
    fn add(&mut self, c: [bool; 6], sign: isize) {
        let fields = [
            &mut self.unresolved,
            &mut self.exchanged,
            &mut self.silent,
            &mut self.ready,
            &mut self.done,
            &mut self.confirmed,
        ];
        for (field, set) in fields.into_iter().zip(c) {
            if set {
                *field = field.wrapping_add_signed(sign);
            }
        }
    }
}

/// At most `max` uses in each `window`.
#[derive(Clone, Debug)]
struct Budget {
    max: u32,
    window: Duration,
    start: Option<Instant>,
    used: u32,
}

impl Budget {
    fn new(max: u32, window: Duration) -> Budget {
        Budget {
            max,
            window,
            start: None,
            used: 0,
        }
    }

    /// Takes one use if any is left in the current window.
    fn take(&mut self, now: Instant) -> bool {
        if self
            .start
            .is_none_or(|t| now.saturating_duration_since(t) >= self.window)
        {
            self.start = Some(now);
            self.used = 0;
        }
        if self.used < self.max {
            self.used += 1;
            true
        } else {
            false
        }
    }
}

impl Node {
    /// A node for entry `me` (0-based index into `entries`), with a
    /// fingerprint `hosts` of the list, an `incarnation` new at every
    /// process start, and a `seed` for its jitter.
    pub fn new(
        entries: &[Entry],
        me: usize,
        hosts: u64,
        incarnation: u64,
        seed: u64,
        params: Params,
    ) -> Node {
        let listed: Vec<Arc<Listed>> = entries.iter().map(|e| Arc::new(Listed::new(e))).collect();
        Node::listing(&listed, me, hosts, incarnation, seed, params)
    }

    /// [`Node::new`] on entries shared with other nodes.
    fn listing(
        listed: &[Arc<Listed>],
        me: usize,
        hosts: u64,
        incarnation: u64,
        seed: u64,
        params: Params,
    ) -> Node {
        // Exactly as many records as peers, not the doubling a collect
        // grows by: at 10 000 peers that would be 6 400 records unused.
        let mut peers = Vec::with_capacity(listed.len().saturating_sub(1));
        peers.extend(
            listed
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != me)
                .map(|(i, e)| {
                    let resolution = matches!(e.host, Host::Name(_))
                        .then(|| Box::new(Resolution::new(params.initial_resolve_backoff())));
                    Peer::new((i + 1) as u16, Arc::clone(e), resolution)
                }),
        );
        let timers = Timers::new(peers.len());
        Node {
            params,
            state: State::Discovering,
            me: (me + 1) as u16,
            own: (listed[me].name.clone(), listed[me].line),
            total: listed.len(),
            hosts,
            incarnation,
            peers,
            seq: 0,
            epoch: 1,
            flags: Flags {
                barrier: params.barrier,
                ..Flags::default()
            },
            started: None,
            finished: false,
            stats: Stats::default(),
            next_drop_warning: None,
            next_progress: None,
            mismatch_warnings: Budget::new(MISMATCH_WARNINGS, DROP_WARNING_EVERY),
            replies: Budget::new(REPLIES_PER_SECOND, Duration::from_secs(1)),
            pacer: Pacer::new(
                retransmit::retransmit_rate(listed.len().saturating_sub(1)),
                RETRANSMIT_BURST,
            ),
            rtt: Rtt::default(),
            loss: Loss::default(),
            last_start_heard: None,
            passed_without_us: None,
            timers,
            round: None,
            due: Vec::new(),
            answers: Vec::new(),
            paced: VecDeque::new(),
            #[cfg(test)]
            examined: 0,
            counts: Counts::default(),
            job: Job::Waiting,
            indirect: VecDeque::new(),
            leaving: None,
            leave_waiting: 0,
            rng: seed,
        }
        .counted()
    }

    fn counted(mut self) -> Node {
        self.recount();
        self
    }

    /// Peer `i`'s part in [`Counts`].
    fn contribution(&self, i: usize) -> [bool; 6] {
        let p = &self.peers[i];
        [
            p.addrs().is_empty(),
            p.exchanged(),
            p.absent(),
            p.flags.ready,
            p.flags.done,
            p.flags.done && p.knows(self.epoch),
        ]
    }

    /// Peer `i`'s record changed since its contribution was `before`.
    fn recounted(&mut self, i: usize, before: [bool; 6]) {
        let after = self.contribution(i);
        self.counts.add(before, -1);
        self.counts.add(after, 1);
    }

    /// Counts every peer afresh: after a change to all of them at once.
    fn recount(&mut self) {
        self.counts = Counts::default();
        for i in 0..self.peers.len() {
            let c = self.contribution(i);
            self.counts.add(c, 1);
        }
    }

    /// Our next heartbeat to peer `i` goes at `at`.
    fn schedule(&mut self, i: usize, at: Instant) {
        self.peers[i].next_heartbeat = When::from(at);
        self.timers.push(at, i, Timer::Heartbeat);
    }

    /// Our network has lost none of our questions lately: a peer never
    /// heard from has not started. A question lost is known once its
    /// retry, a timeout later, is answered: three timeouts leave room for
    /// a peer slower than most.
    fn lossless(&self, now: Instant) -> bool {
        let timeout = retransmit::answer_timeout(&self.params, self.rtt.timeout());
        self.loss.none_seen(timeout * 3, now)
    }

    /// Peer `i`'s name is resolved (again) at `at`.
    fn schedule_resolve(&mut self, i: usize, at: Instant) {
        let Some(r) = &mut self.peers[i].resolution else {
            return;
        };
        r.at = Some(at);
        self.timers.push(at, i, Timer::Resolve);
    }

    /// Starts asking peer `i` afresh: now, on the first retry schedule.
    fn rearm(&mut self, i: usize, now: Instant) {
        self.peers[i].rearm();
        self.schedule(i, now);
    }

    /// Peer `i` was heard at `now`: watch for its silence.
    fn watch_silence(&mut self, i: usize, now: Instant) {
        let p = &mut self.peers[i];
        p.last_heard = When::from(now);
        p.stop_probing();
        self.watch(i);
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Our incarnation: new at every start, and raised when a peer knows a
    /// newer one of this entry.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// True once [`Action::Exit`] was given: further inputs are ignored.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The earliest instant at which [`Input::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let started = self.started?;
        // Once the command runs, the timeout no longer applies.
        let timeout = (!self.job_started()).then(|| started + self.params.timeout);
        let draining = match self.state {
            State::Draining { until, .. } => Some(until),
            _ => None,
        };
        let paced = (!self.paced.is_empty())
            .then(|| self.pacer.next_token())
            .flatten();
        [
            timeout,
            self.job_deadline(),
            self.next_progress,
            draining,
            self.timers.next(),
            paced,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Feeds one input; appends what to do to `out`.
    pub fn transition(&mut self, input: Input, now: Instant, out: &mut Vec<Action>) {
        if self.finished {
            return;
        }
        match input {
            Input::Start => self.start(now),
            Input::Resolved { peer, result } => self.resolved(peer, result, now, out),
            Input::Datagram {
                from,
                message,
                arrived,
            } => self.datagram(from, message, arrived.min(now), now, out),
            Input::Tick => {}
            Input::Report => {
                if self.started.is_some() {
                    self.progress(true, now, out);
                }
            }
            Input::Stop(stop) => {
                if self.stop_job(stop, out) {
                    // A command that runs gets the signal; the node leaves,
                    // and exits with it.
                    self.start_leaving(now);
                } else if matches!(self.state, State::Draining { .. }) {
                    // A second signal, or one while lingering: at once.
                    return self.finish(Reason::Stopped(stop), now, out);
                } else {
                    self.depart(Reason::Stopped(stop), now, out);
                }
            }
            Input::JobEnded(end) => return self.job_ended(end, now, out),
        }
        if self.started.is_none() {
            return;
        }
        // Silence first: READY needs every peer heard within the threshold.
        self.expire(now, out);
        let ready_event = self.advance(now, out);
        if !self.finished {
            self.timers(now, out);
        }
        if !self.finished {
            self.send_due(false, now, out);
            // What READY's last datagram asked for goes out with it: the
            // READY line counts it.
            if let Some(Action::Event(Event::Ready { stats, .. })) =
                ready_event.and_then(|k| out.get_mut(k))
            {
                *stats = self.stats;
            }
        }
        self.settle_timers();
        #[cfg(test)]
        if self.peers.len() <= 64 {
            let kept = self.counts;
            self.recount();
            assert_eq!(kept, self.counts, "counts drifted from the records");
        }
    }

    /// Peer `i`'s deadline for `timer`, as its record says: what a heap
    /// entry is checked against.
    fn deadline(&self, i: usize, timer: Timer) -> Option<Instant> {
        let p = &self.peers[i];
        match timer {
            Timer::Heartbeat => p.next_heartbeat.get().filter(|_| p.target().is_some()),
            Timer::Resolve => p.resolve_at(),
            Timer::Silence => self.silence_deadline(i),
        }
    }

    /// Drops the stale entries at the top of the heap (and moves those put
    /// off), so that [`Node::next_deadline`] is a deadline with something
    /// to do, not a spurious wake-up.
    fn settle_timers(&mut self) {
        while let Some((at, i, timer)) = self.timers.peek() {
            let real = self.deadline(i, timer);
            if real == Some(at) {
                return;
            }
            self.timers.pop();
            // Put off: moved here, or when due.
            if let Some(t) = real
                && t > at
            {
                self.timers.push(t, i, timer);
            }
        }
    }

    /// Takes every peer deadline that is due: resolutions are requested,
    /// silences reported, heartbeats left for `send_due`.
    fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        while let Some((_, i, timer)) = self.timers.pop_due(now) {
            let Some(due) = self.deadline(i, timer) else {
                continue;
            };
            if due > now {
                // Put off since (a heartbeat sent, the peer heard or
                // vouched for): look again then.
                self.timers.push(due, i, timer);
                continue;
            }
            let p = &self.peers[i];
            match timer {
                Timer::Heartbeat => self.due.push(i as u16),
                Timer::Resolve => {
                    if let Host::Name(host) = &p.listed.host {
                        let action = Action::Resolve {
                            peer: p.id,
                            host: host.clone(),
                            port: p.listed.port,
                        };
                        if let Some(r) = &mut self.peers[i].resolution {
                            r.resolving = true;
                            r.started = Some(now);
                            r.at = None;
                        }
                        out.push(action);
                    }
                }
                Timer::Silence => {
                    let p = &mut self.peers[i];
                    p.rare().stage_since = Some(now);
                    if !p.probing {
                        // Overdue: ask it, directly and through others.
                        p.probing = true;
                        p.tries = 0;
                        self.schedule(i, now);
                    } else if p.liveness == Liveness::Alive {
                        self.set_liveness(i, Liveness::Suspect, now, out);
                    } else {
                        self.peers[i].silence_watched = false;
                        self.set_liveness(i, Liveness::Down, now, out);
                        continue;
                    }
                    if let Some(next) = self.silence_deadline(i) {
                        self.timers.push(next, i, Timer::Silence);
                    }
                }
            }
        }
    }

    /// Schedules everything at once: `timers` requests the resolutions,
    /// `send_due` the heartbeats, within this same transition.
    fn start(&mut self, now: Instant) {
        if self.started.is_some() {
            return;
        }
        self.started = Some(now);
        self.next_progress = Some(now + PROGRESS_EVERY);
        for i in 0..self.peers.len() {
            if self.peers[i].by_name() {
                self.schedule_resolve(i, now);
            } else {
                self.schedule(i, now);
            }
        }
    }

    fn slot(&self, id: u16) -> Option<usize> {
        if id == 0 || id == self.me || usize::from(id) > self.total {
            return None;
        }
        Some(usize::from(if id < self.me { id - 1 } else { id - 2 }))
    }

    fn resolved(
        &mut self,
        id: u16,
        result: Result<Vec<SocketAddr>, String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(i) = self.slot(id) else { return };
        if !self.peers[i].resolving() {
            return;
        }
        let before = self.contribution(i);
        self.resolved_addrs(i, result, now, out);
        self.recounted(i, before);
    }

    fn resolved_addrs(
        &mut self,
        i: usize,
        result: Result<Vec<SocketAddr>, String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let silent_after = self.params.silent_after();
        let interval = self.params.interval;
        let jitter = jitter(&mut self.rng);
        let p = &mut self.peers[i];
        let previous = p.target();
        let reply = p.reply_to();
        let name = &p.listed.name;
        let Some(r) = &mut p.resolution else { return };
        r.resolving = false;
        r.started = None;
        r.last = Some(now);
        let was_failing = r.error.is_some();
        let mut addrs: Vec<SocketAddr> = match result {
            Ok(addrs) => addrs.into_iter().map(canonical).collect(),
            Err(e) => {
                r.error = Some(e);
                Vec::new()
            }
        };
        addrs.dedup();
        addrs.truncate(MAX_ADDRS);
        if addrs.is_empty() {
            let retry = r.backoff.mul_f64(jitter);
            r.backoff = (r.backoff * 2).min(interval);
            let error = r.error.get_or_insert_with(|| "no address".into()).clone();
            out.push(Action::Event(Event::ResolveFailed {
                peer: name.clone(),
                error,
                retry,
                first: !was_failing,
            }));
            self.schedule_resolve(i, now + retry);
            return;
        }
        r.error = None;
        r.backoff = self.params.initial_resolve_backoff();
        let moved = addrs != r.addrs && !addrs.iter().any(|a| Some(*a) == reply);
        if moved {
            out.push(Action::Event(Event::Resolved {
                peer: name.clone(),
                addr: addrs[0],
                previous,
            }));
        }
        let changed = addrs != r.addrs;
        r.addrs = addrs;
        // Where it was heard from, found again among its new addresses.
        p.set_reply_to(reply.filter(|_| !moved));
        self.schedule_resolve(i, now + silent_after);
        // A new address, or the first: heartbeat it now (unless it is
        // already on its way there).
        if moved || self.peers[i].next_heartbeat.is_none() {
            self.rearm(i, now);
        }
        if changed {
            self.same_address(i, out);
        }
    }

    /// Says so if peer `i` now shares an address with another peer: a
    /// hosts file that names one peer twice (`localhost` and `127.0.0.1`),
    /// or a stale name. Not fatal: container addresses are reused.
    fn same_address(&self, i: usize, out: &mut Vec<Action>) {
        let p = &self.peers[i];
        for q in self.peers.iter().filter(|q| q.id != p.id) {
            if let Some(addr) = p.addrs().iter().find(|a| q.addrs().contains(a)) {
                let (first, second) = if q.id < p.id { (q, p) } else { (p, q) };
                out.push(Action::Event(Event::SameAddress {
                    addr: *addr,
                    first: first.listed.name.clone(),
                    first_line: first.listed.line,
                    second: second.listed.name.clone(),
                    second_line: second.listed.line,
                }));
            }
        }
    }

    fn datagram(
        &mut self,
        from: SocketAddr,
        message: Result<Message, DecodeError>,
        arrived: Instant,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let from = canonical(from);
        let msg = match message {
            Ok(m) => m,
            Err(e) if e.is_auth() => {
                self.mismatch(from, Mismatch::Secret(e), now, out);
                return self.dropped(Drop::Unauthentic(e), from, now, out);
            }
            Err(e) => return self.dropped(Drop::Malformed(e), from, now, out),
        };
        if msg.hosts != self.hosts {
            self.mismatch(from, Mismatch::HostsList, now, out);
            // Tell its sender, which otherwise reports us as never heard:
            // an acknowledgement, which nobody answers.
            if msg.kind == Kind::Heartbeat && self.replies.take(now) {
                self.answer(from, Kind::Ack, &msg, msg.incarnation, out);
            }
            return self.dropped(Drop::HostsMismatch, from, now, out);
        }
        if msg.to != self.me {
            if msg.from == self.me
                && msg.incarnation == self.incarnation
                && let Some(i) = self.slot(msg.to)
            {
                if self.job_stopping_for_a_reason() {
                    return;
                }
                let (ours, our_line) = self.own.clone();
                let other = &self.peers[i];
                out.push(Action::Event(Event::ListedTwice {
                    ours,
                    our_line,
                    other: other.listed.name.clone(),
                    other_line: other.listed.line,
                }));
                if self.end_job_for(Reason::ListedTwice, now, out) {
                    return;
                }
                return self.finish(Reason::ListedTwice, now, out);
            }
            return self.dropped(Drop::NotForUs, from, now, out);
        }
        let Some(i) = self.slot(msg.from) else {
            return self.dropped(Drop::UnknownSender, from, now, out);
        };
        if !self.believes(&self.peers[i], from) {
            let p = &mut self.peers[i];
            let reason = if p.addrs().is_empty() {
                Drop::Unresolved
            } else {
                p.rare().wrong_source = Some(from);
                Drop::WrongAddress
            };
            // It may have moved (a restarted container): look again.
            self.resolve_soon(i, now);
            return self.dropped(reason, from, now, out);
        }
        // Every check comes before anything is recorded: a dropped datagram
        // changes nothing but a counter (and may be answered). An earlier
        // incarnation's datagram is that, whatever else is wrong with it.
        let p = &self.peers[i];
        if let Some(known) = p.incarnation()
            && msg.incarnation < known
        {
            // An incarnation is never taken back: its datagrams may be
            // replays. If it is a restart behind the clock, the answer
            // tells it which incarnation to take; a replay cannot use it.
            if msg.kind == Kind::Heartbeat && self.replies.take(now) {
                self.answer(from, Kind::Stale, &msg, known, out);
            }
            return self.dropped(Drop::Stale, from, now, out);
        }
        let never_sent = msg.acked == 0 || msg.acked > self.seq;
        // An acknowledgement of ours must name a heartbeat we sent; one for
        // an earlier incarnation of ours, riding on a heartbeat, is moot.
        let ack = msg.ack().filter(|&(echo, _)| echo == self.incarnation);
        match msg.kind {
            Kind::Ack if never_sent || ack.is_none() => {
                return self.dropped(Drop::BogusAck, from, now, out);
            }
            Kind::Heartbeat | Kind::Leave if ack.is_some() && never_sent => {
                return self.dropped(Drop::BogusAck, from, now, out);
            }
            // The answer to a replay of our previous process's heartbeat.
            Kind::Stale if never_sent => return self.dropped(Drop::Replay, from, now, out),
            Kind::ProbeReply if never_sent => {
                return self.dropped(Drop::BogusAck, from, now, out);
            }
            _ => {}
        }
        let current = p.incarnation() == Some(msg.incarnation);
        let replay = match msg.kind {
            Kind::Heartbeat | Kind::Leave | Kind::ProbeRequest | Kind::ProbeReply => {
                msg.seq <= p.heartbeat_seq
            }
            Kind::Ack => msg.acked <= p.acked_seq,
            Kind::Stale => false,
        };
        if current && replay {
            return self.dropped(Drop::Replay, from, now, out);
        }
        if current && p.liveness == Liveness::Left {
            // It has left: its process may still answer for a moment, and
            // may not have heard our acknowledgement.
            if msg.kind == Kind::Leave {
                self.peers[i].heartbeat_seq = msg.seq;
                self.answer(from, Kind::Ack, &msg, msg.incarnation, out);
            }
            return;
        }
        let silent_after = self.params.silent_after();
        let before = self.contribution(i);
        if !current {
            let p = &mut self.peers[i];
            let restarted = p.incarnation().is_some();
            if restarted {
                p.forget();
            }
            p.set_incarnation(msg.incarnation);
            // What we sent before it started is no evidence against it:
            // retries start over, on the round trip.
            p.tries = 0;
            // A node's start heartbeats are its first datagrams, numbered
            // from 1 in one round to its peers listed by address: retries
            // and answers come later. (Peers listed by name are asked as
            // their names resolve, so a node with few of them resolved may
            // look as if starting: that only holds a first retry back a
            // little, within the bound below.)
            if msg.kind == Kind::Heartbeat && msg.seq < self.total as u64 {
                self.last_start_heard = Some(now);
            }
            if restarted {
                let peer = self.who(i);
                out.push(Action::Event(Event::Restarted { peer }));
            }
        }
        let p = &mut self.peers[i];
        let was_exchanged = p.exchanged();
        self.stats.received += 1;
        p.arrived = p.arrived.max(When::from(arrived));
        p.set_reply_to(Some(from));
        p.believed();
        p.flags = msg.flags;
        let resolve_later = p.by_name() && !p.resolving();
        if resolve_later {
            // Only pushed back: the heap entry at the earlier time finds
            // the record moved and is dropped.
            if let Some(r) = &mut self.peers[i].resolution {
                r.at = Some(now + silent_after);
            }
        }
        // Heard before this datagram: had our question been lost, its
        // retry would have counted as a loss.
        let heard_before = self.peers[i].heard_within(silent_after, now);
        self.watch_silence(i, now);
        let p = &mut self.peers[i];
        if msg.flags.done
            && self.passed_without_us.is_none()
            && matches!(self.state, State::Discovering | State::Exchanging)
        {
            self.passed_without_us = Some(p.listed.name.clone());
            out.push(Action::Event(Event::PassedWithoutUs {
                peer: p.listed.name.clone(),
            }));
        }
        if msg.kind == Kind::Heartbeat {
            p.heartbeat = true;
            p.heartbeat_seq = msg.seq;
            p.owe_ack(msg.seq);
            // Never acknowledged by us, it waits for our acknowledgement
            // whether it asks or not: it does not when it took our
            // question for crossing its own, and that question was lost
            // or went before it started.
            if (msg.ask || !p.acknowledged) && !p.answer {
                p.answer = true;
                self.answers.push(i as u16);
            }
        } else if msg.seq > 0 {
            p.heartbeat_seq = msg.seq;
        }
        let p = &self.peers[i];
        if let Some((_, acked)) = ack
            && acked > p.acked_seq
        {
            self.acknowledged(i, acked, heard_before, now);
        }
        self.recounted(i, before);
        let p = &self.peers[i];
        if !was_exchanged && p.exchanged() {
            let have = 1 + self.counts.exchanged;
            out.push(Action::Event(Event::Exchanged {
                peer: self.who(i),
                have,
                total: self.total,
            }));
        }
        if msg.kind == Kind::Leave {
            return self.peer_left(i, from, &msg, now, out);
        }
        if self.peers[i].liveness != Liveness::Alive {
            self.set_liveness(i, Liveness::Alive, now, out);
        }
        self.vouch(i, now, out);
        match msg.kind {
            // Our own incarnation named back is the answer to a replay of
            // our previous process's datagrams: nothing to do.
            Kind::Stale if msg.echo > self.incarnation => {
                self.reincarnate(i, msg.echo, now, out);
            }
            Kind::ProbeRequest => {
                self.probe_for(i, msg.echo, msg.seq, now);
                self.heard(i, now);
            }
            Kind::ProbeReply => {
                self.vouched(msg.echo, msg.acked, now, out);
                self.heard(i, now);
            }
            _ => self.heard(i, now),
        }
    }

    /// Peer `i` acknowledged our heartbeat `acked`; `heard` says whether
    /// it had been heard before, so that the answer was to a peer that is
    /// up.
    fn acknowledged(&mut self, i: usize, acked: u64, heard: bool, now: Instant) {
        self.leave_acknowledged(i, acked);
        let asked = self.awaits(&self.peers[i]);
        let latest = self.seq;
        let p = &mut self.peers[i];
        p.ack = true;
        p.acked_seq = acked;
        // Every question has a sequence number of its own, so the answer
        // times the very question it answers, a retry's or an earlier one
        // (unlike TCP's, whose retransmissions are ambiguous): under load
        // the estimate grows with the real round trip, and retries with it.
        let answered = p.asked(latest).find(|(seq, _)| *seq == acked);
        if let Some((_, sent)) = answered {
            let r = now.saturating_duration_since(sent);
            p.rtt.sample(r);
            self.rtt.sample(r);
            // What it says about loss, if the peer was up when asked (a
            // newcomer's first questions go to peers it has not heard, and
            // those lost are never seen, so those answered say nothing).
            // The answer to a retry says the question before it was lost
            // (on its way or its answer's); the answer to the first
            // question, however late, says nothing was, and a retry sent
            // meanwhile was only impatient. (A question that may have
            // crossed the peer's first datagram is no longer counted in
            // `tries`, so a retry after it whose answer comes counts as
            // clean even if that question's answer was lost: the evidence
            // errs towards none lost by that much.)
            let retry_answered =
                p.tries >= 2 && p.probe(latest).is_some_and(|(seq, _)| seq == acked);
            if heard {
                if retry_answered {
                    self.loss.lost();
                } else {
                    self.loss.answered(now);
                }
            }
        }
        if answered.is_some() || p.probe(latest).is_some_and(|(seq, _)| seq <= acked) {
            p.tries = 0;
            p.answered();
        }
        if asked && !self.awaits(&self.peers[i]) {
            let round = self.next_round(now);
            self.schedule(i, round);
        }
    }

    /// Peer `i` was heard: it is up, so an answer we still wait for from it
    /// is retried as soon as our question cannot be crossing its datagram
    /// any more, not on the backoff for peers that have not started.
    fn heard(&mut self, i: usize, now: Instant) {
        let p = &self.peers[i];
        if !self.awaits(p) {
            return;
        }
        let Some((_, sent)) = p.probe(self.seq) else {
            // Not asked yet (it is heard before we knew where it is, or it
            // does not know this incarnation of ours): ask now.
            if p.next_heartbeat.get().is_none_or(|t| t > now) {
                self.schedule(i, now);
            }
            return;
        };
        // Had our question reached it before it sent this, this would carry
        // the answer. Arrived once the question cannot have been crossing
        // any more, it says the question was lost (or went before the peer
        // started): ask again now. Arrived sooner, it crossed the question,
        // which a peer that is up answers: ask again when its answer is
        // overdue, counting besides as long as this waited in our receive
        // queue (under load, the question waits as long in the peer's).
        let crossed = self.crossed(p, now);
        let retry = if crossed {
            let wait = retransmit::answer_timeout(&self.params, self.rtt_of(p));
            let queued = now.saturating_duration_since(p.arrived.get().unwrap_or(now));
            (sent + wait + queued).max(now)
        } else {
            now
        };
        if p.next_heartbeat.get().is_none_or(|t| retry < t) {
            self.schedule(i, retry);
        }
        if !crossed {
            // Heard after our question was lost, it is not silent: retries
            // back off from the last quick one again, not from where a
            // run of lost questions and answers left them (under loss, an
            // interval apart while it heartbeats us all along).
            let p = &mut self.peers[i];
            p.tries = p.tries.min(retransmit::FAST_RETRIES);
        }
    }

    /// Whether we ask `p` for an acknowledgement: until it has acknowledged
    /// this incarnation, while it is overdue, and while it waits for our
    /// flags (it runs with `--barrier`) until it has acknowledged them.
    fn awaits(&self, p: &Peer) -> bool {
        !p.ack
            || p.probing
            || p.leave_pending
            || !p.requests().is_empty()
            || (p.flags.barrier && !p.knows(self.epoch))
    }

    /// The node's next round of steady heartbeats. Every peer that needs
    /// nothing from us is heartbeated in the same round, so that a node
    /// wakes up once an interval to send, not once per peer; rounds are
    /// between 75% and 100% of the interval apart, so that no peer waits
    /// longer than an interval and nodes started together drift apart.
    fn next_round(&mut self, now: Instant) -> Instant {
        match self.round {
            Some(t) if t > now => t,
            _ => {
                let t = now + self.params.interval.mul_f64(jitter(&mut self.rng));
                self.round = Some(t);
                t
            }
        }
    }

    /// Whether `p`'s latest datagram reached our socket while our latest
    /// question to it may still have been crossing it on the way (within
    /// two round trips of the question), whenever we got to it.
    fn crossed(&self, p: &Peer, now: Instant) -> bool {
        let srtt = p.rtt.srtt().or(self.rtt.srtt());
        p.probe(self.seq).is_some_and(|(_, sent)| {
            p.arrived.get().unwrap_or(now) < sent + retransmit::crossing_window(&self.params, srtt)
        })
    }

    /// The measured retransmission timeout to `p`, or the node's.
    fn rtt_of(&self, p: &Peer) -> Option<Duration> {
        p.rtt.timeout().or(self.rtt.timeout())
    }

    /// Whether a datagram from `from` may speak for `p`. Its own address
    /// does; with a secret any address does, since the MAC proves a member
    /// sent it. Without a secret, a source of a family in which `p` has no
    /// address, on its port, does too: a host reaches a peer of the other
    /// family from its address of that family, which no list can name.
    fn believes(&self, p: &Peer, from: SocketAddr) -> bool {
        let addrs = p.addrs();
        addrs.contains(&from)
            || self.params.authenticated
            || (from.port() == p.listed.port
                && !addrs.is_empty()
                && addrs.iter().all(|a| a.is_ipv4() != from.is_ipv4()))
    }

    /// Answers `msg` from `to` with an acknowledgement or a stale notice
    /// carrying `echo`.
    fn answer(
        &mut self,
        to: SocketAddr,
        kind: Kind,
        msg: &Message,
        echo: u64,
        out: &mut Vec<Action>,
    ) {
        let message = Message {
            kind,
            flags: self.flags,
            ask: false,
            hosts: self.hosts,
            from: self.me,
            to: msg.from,
            incarnation: self.incarnation,
            seq: 0,
            echo,
            acked: msg.seq,
        };
        self.stats.acks += 1;
        out.push(Action::Send { to, message });
    }

    /// Peer `i` knows incarnation `known` of our entry, newer than ours:
    /// the previous process's clock was ahead. Take a newer one;
    /// every acknowledgement we had is for the old one, so exchange anew.
    ///
    /// Not simply `known + 1`: two processes of this entry restarted behind
    /// the clock one after the other can both be told the same `known`,
    /// and the second would then speak with the first one's incarnation, a
    /// replay to whoever heard the first. A random step (up to 2^24 µs,
    /// about 17 s of clock) keeps them apart; a peer that knows a higher
    /// one still answers with a stale notice, and the next step goes above
    /// that.
    fn reincarnate(&mut self, i: usize, known: u64, now: Instant, out: &mut Vec<Action>) {
        let step = 1 + (random(&mut self.rng) & REINCARNATION_STEP);
        let Some(incarnation) = known.checked_add(step) else {
            return;
        };
        self.incarnation = incarnation;
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            p.ack = false;
            p.acked_seq = 0;
            p.acknowledged = false;
            self.rearm(i, now);
        }
        self.recount();
        out.push(Action::Event(Event::Reincarnated {
            peer: self.peers[i].listed.name.clone(),
            known,
            incarnation,
        }));
    }

    fn dropped(&mut self, reason: Drop, from: SocketAddr, now: Instant, out: &mut Vec<Action>) {
        self.stats.dropped[reason.index()] += 1;
        out.push(Action::Event(Event::Dropped { reason, from }));
        // Duplicates are what networks do, and a peer heard before its
        // name resolves is what containers starting together do: counted,
        // never warned about.
        let news = !matches!(reason, Drop::Replay | Drop::Unresolved);
        if news && self.next_drop_warning.is_none_or(|t| now >= t) {
            self.next_drop_warning = Some(now + DROP_WARNING_EVERY);
            out.push(Action::Event(Event::Dropping {
                reason,
                from,
                total: self.stats.dropped_total(),
            }));
        }
    }

    /// Notes that datagrams from a peer's address can never be believed.
    /// Each new finding is warned about at most once per
    /// [`DROP_WARNING_EVERY`] for a peer, within a node-wide budget: no
    /// mix of bad datagrams makes the log grow faster.
    fn mismatch(&mut self, from: SocketAddr, what: Mismatch, now: Instant, out: &mut Vec<Action>) {
        let Some(p) = self.peers.iter_mut().find(|p| p.addrs().contains(&from)) else {
            return;
        };
        let r = p.rare.get_or_insert_with(Box::default);
        let news = r.mismatch != Some(what);
        r.mismatch = Some(what);
        let due = r
            .mismatch_warned
            .is_none_or(|t| now.saturating_duration_since(t) >= DROP_WARNING_EVERY);
        if news && due && self.mismatch_warnings.take(now) {
            r.mismatch_warned = Some(now);
            out.push(Action::Event(Event::Mismatch {
                peer: p.listed.name.clone(),
                from,
                what,
            }));
        }
    }

    /// Resolve peer `i`'s name again soon, at most once per
    /// [`RESOLVE_MIN_GAP`].
    fn resolve_soon(&mut self, i: usize, now: Instant) {
        let Some(r) = &self.peers[i].resolution else {
            return;
        };
        if r.resolving {
            return;
        }
        let earliest = r.last.map_or(now, |t| (t + RESOLVE_MIN_GAP).max(now));
        if r.at.is_none_or(|t| earliest < t) {
            self.schedule_resolve(i, earliest);
        }
    }

    /// Every peer was heard within the silence threshold (or left once
    /// READY). The detector takes a peer for down one stage at a time, so
    /// a node that ran late may not have yet: READY looks for itself. It
    /// looks only while the counts allow READY and READY has not come.
    fn none_silent(&self, now: Instant) -> bool {
        let threshold = self.params.silent_after();
        self.peers
            .iter()
            .all(|p| p.heard_within(threshold, now) || p.liveness == Liveness::Left)
    }

    /// Moves the state forward as far as the records allow; says where in
    /// `out` the READY event went, if READY was announced.
    fn advance(&mut self, now: Instant, out: &mut Vec<Action>) -> Option<usize> {
        let mut ready_event = None;
        let n = self.peers.len();
        if self.state == State::Discovering && self.counts.unresolved == 0 {
            self.state = State::Exchanging;
        }
        if matches!(self.state, State::Discovering | State::Exchanging)
            && self.counts.exchanged == n
            && self.counts.silent == 0
            && self.none_silent(now)
        {
            // The state never moves back, so this happens once a process.
            self.state = State::Ready { since: now };
            out.push(Action::Ready);
            if !self.params.barrier {
                self.start_job(out);
            }
            ready_event = Some(out.len());
            out.push(Action::Event(Event::Ready {
                after: now - self.started.unwrap_or(now),
                stats: self.stats,
            }));
            self.set_flags(
                Flags {
                    ready: true,
                    ..self.flags
                },
                now,
            );
        }
        if self.params.barrier {
            // A peer that is DONE knows that every peer is READY: hearing
            // it is as good as hearing each of them.
            if matches!(self.state, State::Ready { .. })
                && (self.counts.ready == n || self.counts.done > 0)
                && self.params.job.is_some()
                && !self.job_started()
            {
                // The barrier has passed: the command starts, and the node
                // serves its peers while it runs.
                self.start_job(out);
                self.set_flags(
                    Flags {
                        done: true,
                        ..self.flags
                    },
                    now,
                );
            }
            if matches!(self.state, State::Ready { .. })
                && (self.counts.ready == n || self.counts.done > 0)
                && self.params.job.is_none()
            {
                let linger = self.params.linger();
                self.state = State::Draining {
                    until: now + linger,
                    reason: Reason::BarrierLingered,
                };
                if !self.peers.is_empty() {
                    out.push(Action::Event(Event::AllReady { linger }));
                }
                self.set_flags(
                    Flags {
                        done: true,
                        ..self.flags
                    },
                    now,
                );
            }
            if matches!(self.state, State::Draining { .. })
                && self.leaving.is_none()
                && self.counts.confirmed == n
            {
                self.finish(Reason::BarrierComplete, now, out);
            }
        }
        if let State::Draining { reason, .. } = self.state
            && self.left_everyone()
        {
            self.finish(reason, now, out);
        }
        ready_event
    }

    /// New flags: a peer that waits for them is told at once, and until it
    /// acknowledges; the others with the next heartbeat.
    fn set_flags(&mut self, flags: Flags, now: Instant) {
        if flags == self.flags {
            return;
        }
        self.flags = flags;
        self.epoch = self.seq + 1;
        // Only a peer that waits for our READY needs it at once; the others
        // learn it from our next heartbeat.
        for i in 0..self.peers.len() {
            if self.peers[i].flags.barrier {
                self.rearm(i, now);
            }
        }
        // Who has acknowledged our flags depends on them.
        self.recount();
    }

    /// Whatever is due of the node's own deadlines: the timeout, a
    /// progress report, the end of a linger.
    fn timers(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(started) = self.started else { return };
        self.job_timers(now, out);
        if now >= started + self.params.timeout && !self.job_started() {
            let after = self.params.timeout;
            let barrier = match self.state {
                // Passed the barrier, lingering: it passed.
                State::Draining { reason, .. } => return self.finish(reason, now, out),
                State::Ready { .. } if !self.params.barrier => {
                    return self.depart(Reason::TimeoutAfterReady(after), now, out);
                }
                State::Ready { .. } => true,
                State::Discovering | State::Exchanging => false,
            };
            out.push(Action::Event(Event::TimedOut {
                after,
                total: self.total,
                barrier,
                missing: self.missing(barrier, now),
                passed_without_us: self.passed_without_us.clone(),
            }));
            let reason = if barrier {
                Reason::TimeoutBeforeBarrier(after)
            } else {
                Reason::TimeoutBeforeReady(after)
            };
            return self.finish(reason, now, out);
        }
        if self.next_progress.is_some_and(|t| now >= t) {
            self.progress(false, now, out);
        }
        if let State::Draining { until, reason } = self.state
            && now >= until
        {
            self.finish(reason, now, out);
        }
    }

    /// Sends every heartbeat that is due or asked for, each carrying the
    /// acknowledgement we owe, and schedules the next one: the next retry
    /// while we ask the peer for an answer, at the interval otherwise.
    /// With `answers_only`, only the answers owed are sent (the node is
    /// leaving).
    fn send_due(&mut self, answers_only: bool, now: Instant, out: &mut Vec<Action>) {
        let mut batch = std::mem::take(&mut self.answers);
        if !answers_only {
            // Heartbeats scheduled for now within this transition too.
            self.expire(now, out);
            batch.append(&mut self.due);
            // The retries whose turn it is.
            let turn = self.pacer.tokens(now).min(self.paced.len());
            for i in self.paced.drain(..turn) {
                self.peers[i as usize].paced = false;
                batch.push(i);
            }
        }
        batch.sort_unstable();
        batch.dedup();
        let interval = self.params.interval;
        // Our first intervals: retries to a peer never heard back off less.
        let young = self
            .started
            .is_some_and(|s| now < s + interval * retransmit::YOUTH);
        for &i in &batch {
            let i = i as usize;
            #[cfg(test)]
            {
                self.examined += 1;
            }
            let p = &self.peers[i];
            let Some(to) = p.target() else { continue };
            // Leaving, only the leave goes out on our own account.
            let leave = self.leave_due(i, now);
            let timer = !answers_only
                && p.next_heartbeat.get().is_some_and(|t| t <= now)
                && (self.leaving.is_none() || leave);
            if !timer && !p.answer {
                continue;
            }
            let awaits = self.awaits(p);
            // Our last question may still be on its way to it (our
            // heartbeats crossed): answering, we need not ask again. Sent
            // longer before its datagram reached our socket, it was lost, or
            // went before the peer started.
            let in_flight = self.crossed(p, now);
            let ask = awaits && (timer || !in_flight);
            // Asked again on our own account (not as an answer).
            let retry = ask && p.tries > 0 && !p.answer;
            // A retry to a peer never heard, on a network that has lost
            // none of our questions lately (and not one a peer asked us to
            // put to it): it has not started, and its start will announce
            // it.
            if retry
                && p.last_heard.is_none()
                && p.requests().is_empty()
                && let Some((_, sent)) = p.probe(self.seq)
                && now < sent + interval * 3 / 4
                && self.lossless(now)
            {
                let at = if p.tries >= 2 {
                    // Asked on the quick schedule before we knew, it waits
                    // for an interval after our last question.
                    Some(sent + interval.mul_f64(jitter(&mut self.rng)))
                } else {
                    // The first retry waits while peers are still starting
                    // (a start heartbeat came less than three quarters of a
                    // first retry's wait ago), up to three quarters of an
                    // interval after our question: it is most likely one
                    // of those to come, and no one is READY before the last
                    // has. Once the starts stop it goes: it is what saves a
                    // newcomer whose start heartbeat was lost on its way to
                    // a peer started before it, which asks it only once an
                    // interval.
                    let wait = self.params.initial_rto();
                    self.last_start_heard
                        .filter(|&t| now < t + wait * 3 / 4)
                        .map(|t| t + wait.mul_f64(jitter(&mut self.rng)))
                };
                if let Some(at) = at {
                    self.schedule(i, at);
                    continue;
                }
            }
            if retry && !self.pacer.take(now) {
                // Its heartbeat stays due: it goes when its turn comes.
                if !p.paced {
                    self.peers[i].paced = true;
                    self.paced.push_back(i as u16);
                }
                continue;
            }
            self.seq += 1;
            let (echo, acked) = match (p.ack_due(), p.incarnation()) {
                (Some(seq), Some(incarnation)) => (incarnation, seq),
                _ => (0, 0),
            };
            let message = Message {
                kind: if leave { Kind::Leave } else { Kind::Heartbeat },
                flags: self.flags,
                ask,
                hosts: self.hosts,
                from: self.me,
                to: p.id,
                incarnation: self.incarnation,
                seq: self.seq,
                echo,
                acked,
            };
            out.push(Action::Send { to, message });
            // Heard within the silence threshold: it is up.
            let heard = p.heard_within(self.params.silent_after(), now);
            self.stats.heartbeats += 1;
            if ask && p.tries > 0 {
                self.stats.retries += 1;
                self.stats.retries_unheard += u64::from(!heard);
            } else if timer && !awaits && !leave {
                self.stats.steady += 1;
            }
            let rtt = self.rtt_of(p);
            let p = &mut self.peers[i];
            p.acknowledged |= acked > 0;
            p.ack_sent();
            p.answer = false;
            if ask {
                p.ask(self.seq, now);
                let wait = retransmit::retry_after(&self.params, heard, young, rtt, p.tries);
                let factor = jitter(&mut self.rng);
                let indirect = p.probing && p.tries % 2 == 1 && self.leaving.is_none();
                self.schedule(i, now + wait.mul_f64(factor));
                if indirect {
                    // Every other question to an overdue peer also goes
                    // through others: one bad link does not condemn it.
                    self.probe_indirectly(i, now, out);
                }
            } else if !awaits {
                let round = self.next_round(now);
                self.schedule(i, round);
            }
            // Otherwise an answer that did not ask again: the retry of the
            // question in flight stays where it is.
        }
        batch.clear();
        self.answers = batch;
    }

    fn finish(&mut self, reason: Reason, now: Instant, out: &mut Vec<Action>) {
        // A peer that asked still gets its answer: the DONE that lets us
        // leave may ask for the acknowledgement its sender leaves on.
        self.send_due(true, now, out);
        self.state = State::Draining { until: now, reason };
        self.finished = true;
        out.push(Action::Exit(reason));
    }

    /// Says who is missing what, in the words of the timeout report, and
    /// when to say it next: never again once READY (with `--barrier`, once
    /// through it), unless `asked`.
    fn progress(&mut self, asked: bool, now: Instant, out: &mut Vec<Action>) {
        let waiting = match self.state {
            State::Discovering | State::Exchanging => Some(false),
            State::Ready { .. } if self.params.barrier => Some(true),
            State::Ready { .. } | State::Draining { .. } => None,
        };
        let after = now.saturating_duration_since(self.started.unwrap_or(now));
        let Some(barrier) = waiting else {
            self.next_progress = None;
            if !asked {
                return;
            }
            out.push(Action::Event(Event::Progress {
                after,
                total: self.total,
                barrier: false,
                missing: Vec::new(),
                more: 0,
            }));
            return;
        };
        self.next_progress = Some(now + PROGRESS_EVERY);
        let mut missing = self.missing(barrier, now);
        let more = missing.len().saturating_sub(PROGRESS_NAMES);
        missing.truncate(PROGRESS_NAMES);
        out.push(Action::Event(Event::Progress {
            after,
            total: self.total,
            barrier,
            missing,
            more,
        }));
    }

    /// Every peer that keeps us from READY, or with `barrier`, from
    /// passing the barrier, and what it lacks.
    fn missing(&self, barrier: bool, now: Instant) -> Vec<Missing> {
        let silent_after = self.params.silent_after();
        self.peers
            .iter()
            .filter_map(|p| {
                let left_ready = p.liveness == Liveness::Left && !p.absent();
                let silent = !p.heard_within(silent_after, now) && !left_ready;
                let not_ready = barrier && !p.flags.ready;
                if p.exchanged() && !silent && !not_ready {
                    return None;
                }
                let lookup = match p.resolution.as_deref() {
                    Some(Resolution {
                        started: Some(t), ..
                    }) => Lookup::UnderWay(now.saturating_duration_since(*t)),
                    Some(Resolution { error: Some(e), .. }) => Lookup::Failed(e.clone()),
                    _ => Lookup::NotTried,
                };
                Some(Missing {
                    peer: p.listed.name.clone(),
                    index: p.id,
                    addr: p.target(),
                    lookup: p.target().is_none().then_some(lookup),
                    heartbeat: p.heartbeat,
                    ack: p.ack,
                    last_heard: p.last_heard.get().map(|t| now.saturating_duration_since(t)),
                    silent: p.exchanged() && silent,
                    left: p.liveness == Liveness::Left,
                    not_ready,
                    mismatch: p.rare.as_ref().and_then(|r| r.mismatch),
                    wrong_source: p.rare.as_ref().and_then(|r| r.wrong_source),
                })
            })
            .collect()
    }
}

/// A factor in (0.75, 1]: timers fire a little early, never late, so that
/// peers started together drift apart instead of beating in step.
fn jitter(state: &mut u64) -> f64 {
    1.0 - 0.25 * ((random(state) >> 11) as f64 / (1u64 << 53) as f64)
}

/// splitmix64: the next of the driver-seeded sequence.
fn random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// IPv4 peers seen through a dual-stack socket arrive as `::ffff:a.b.c.d`.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod scale;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
