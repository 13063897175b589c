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
use std::net::{SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hosts::{Entry, Host};
use crate::wire::{DecodeError, Flags, Message};

mod detector;
mod events;
mod job;
mod membership;
mod peer;
mod progress;
mod reason;
mod receive;
mod resolve;
mod retransmit;
mod send;
mod timers;
mod when;

pub use detector::LEAVE_WAIT;
pub use events::{Drop, Event, Lookup, Mismatch, Missing, PeerRef, Stats, pretty};
use job::Job;
pub use job::{JobEnd, JobParams, KILL_GRACE};
use peer::{Listed, Peer, Resolution};
pub use reason::{Reason, Stop};
use receive::Budget;
use retransmit::{Loss, Pacer, RETRANSMIT_BURST, Rtt};
use timers::Timers;
use when::When;

/// How often at most the machine raises a warning about dropped datagrams.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);
/// While not READY (or with `--barrier`, not through it), who is missing
/// is said this often.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Warnings about one peer's mismatched configuration: at most one per
/// [`DROP_WARNING_EVERY`] for each peer, and at most this many for all
/// peers together, so that no input can make the log grow without bound.
const MISMATCH_WARNINGS: u32 = 4;
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

    /// Every peer was heard within the silence threshold. A peer that left
    /// once READY counts while its leave is that recent, as any datagram
    /// does, and no longer: it is gone. The detector takes a peer for down
    /// one stage at a time, so a node that ran late may not have yet:
    /// READY looks for itself. It looks only while the counts allow READY
    /// and READY has not come.
    fn none_silent(&self, now: Instant) -> bool {
        let threshold = self.params.silent_after();
        self.peers.iter().all(|p| p.heard_within(threshold, now))
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

    fn finish(&mut self, reason: Reason, now: Instant, out: &mut Vec<Action>) {
        // A peer that asked still gets its answer: the DONE that lets us
        // leave may ask for the acknowledgement its sender leaves on.
        self.send_due(true, now, out);
        self.state = State::Draining { until: now, reason };
        self.finished = true;
        out.push(Action::Exit(reason));
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
