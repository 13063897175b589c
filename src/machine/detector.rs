//! The failure detector: when a peer not heard from is asked, suspected,
//! and taken for down, and the indirect probes that keep one lossy or
//! one-way link from condemning a live peer.
//!
//! Every peer heartbeats every other once an interval (rounds 75% to 100%
//! of the interval apart). Counting from the last time a peer was heard,
//! directly or through another peer:
//!
//! | after          | the peer is | what happens                                   |
//! |----------------|-------------|------------------------------------------------|
//! | 1.5 intervals  | overdue     | asked directly on its round trip, and through up to [`HELPERS`] other peers (SWIM's ping-req) |
//! | 2 intervals    | suspect     | reported once; the probes go on                |
//! | 2.5 intervals  | down        | reported once; it no longer counts as present  |
//!
//! A peer heard again after `suspect` or `down` is reported `up`; a peer
//! that says it leaves is reported `left` and not watched until it comes
//! back as a new incarnation (`restarted`, then `up`).
//!
//! Why fixed multiples of the interval and not a phi-accrual estimate: the
//! heartbeats' spacing is set by the sender's rounds, not by the network,
//! so arrival times carry little information a threshold does not; what
//! matters under loss is to look again before accusing, which the probes
//! do on the round-trip timescale. See the README's table of detection
//! time against false positives.

use std::time::{Duration, Instant};

use super::{Action, Event, Node, Params, State};
use crate::wire::{Kind, Message};

/// How many other peers an overdue peer is probed through at a time.
pub(super) const HELPERS: usize = 3;
/// Indirect probes of ours that may be awaiting an answer.
const OUTSTANDING: usize = 64;
/// Requests to probe a peer for others that a node keeps per peer.
const REQUESTS: usize = 4;
/// How long a leaving node waits for every peer to acknowledge its leave.
pub const LEAVE_WAIT: Duration = Duration::from_millis(200);

/// What we make of a peer's presence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Liveness {
    /// Heard within the thresholds (or never heard yet).
    #[default]
    Alive,
    Suspect,
    Down,
    /// It said it is leaving.
    Left,
}

impl Liveness {
    /// Not present: READY cannot count it, and nothing is asked of it.
    pub(super) fn gone(self) -> bool {
        matches!(self, Liveness::Down | Liveness::Left)
    }
}

impl Params {
    /// A peer not heard from for this long is reported suspect.
    pub fn suspect_after(&self) -> Duration {
        self.interval * 2
    }
}

impl Node {
    /// When peer `i` was last known alive: heard, or vouched for by a peer
    /// that heard it after we asked.
    pub(super) fn alive_at(&self, i: usize) -> Option<Instant> {
        let p = &self.peers[i];
        match (p.last_heard.get(), p.vouched()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next threshold peer `i`'s silence crosses, counted from when it
    /// was last known alive.
    pub(super) fn silence_deadline(&self, i: usize) -> Option<Instant> {
        let p = &self.peers[i];
        if !p.silence_watched || p.liveness.gone() {
            return None;
        }
        let (overdue, suspect, down) = (
            self.params.overdue_after(),
            self.params.suspect_after(),
            self.params.silent_after(),
        );
        let (after, share) = if !p.probing {
            (overdue, Duration::ZERO)
        } else if p.liveness == Liveness::Alive {
            (suspect, suspect - overdue)
        } else {
            (down, down - suspect)
        };
        // A stage is entered no sooner than its share of time after the
        // one before: a node that was itself stalled (stopped, starved of
        // CPU) finds every threshold long past when it runs again, and
        // must first probe and read what waits in its socket, not accuse
        // every peer in one pass.
        let since = p.stage_since().filter(|_| p.probing).map(|t| t + share);
        self.alive_at(i)
            .map(|t| (t + after).max(since.unwrap_or(t)))
    }

    /// Peer `i`'s liveness becomes `to`: the change is reported once.
    pub(super) fn set_liveness(
        &mut self,
        i: usize,
        to: Liveness,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let from = self.peers[i].liveness;
        if from == to {
            return;
        }
        let before = self.contribution(i);
        self.peers[i].liveness = to;
        let peer = self.who(i);
        let silent = self
            .alive_at(i)
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let event = match to {
            Liveness::Alive => Event::Up { peer },
            Liveness::Suspect => Event::Suspect { peer, silent },
            Liveness::Down => Event::Down { peer, silent },
            Liveness::Left => Event::Left { peer },
        };
        out.push(Action::Event(event));
        self.recounted(i, before);
        if to == Liveness::Down {
            self.peer_down_for_job(now, out);
        }
    }

    /// Asks up to [`HELPERS`] peers that are up to probe peer `i` for us:
    /// one request each, under one sequence number.
    pub(super) fn probe_indirectly(&mut self, i: usize, now: Instant, out: &mut Vec<Action>) {
        let n = self.peers.len();
        if n < 2 || !matches!(self.state, State::Ready { .. }) {
            return;
        }
        let mut helpers = [usize::MAX; HELPERS];
        let mut found = 0;
        for _ in 0..HELPERS * 3 {
            if found == HELPERS {
                break;
            }
            let j = (super::random(&mut self.rng) % n as u64) as usize;
            let h = &self.peers[j];
            let up = h.liveness == Liveness::Alive
                && h.exchanged()
                && h.heard_within(self.params.overdue_after(), now)
                && h.target().is_some();
            if j != i && up && !helpers[..found].contains(&j) {
                helpers[found] = j;
                found += 1;
            }
        }
        if found == 0 || !self.pacer.take(now) {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        if self.indirect.len() == OUTSTANDING {
            self.indirect.pop_front();
        }
        self.indirect.push_back((seq, i));
        let target = self.peers[i].id;
        for &j in &helpers[..found] {
            let h = &self.peers[j];
            let Some(to) = h.target() else { continue };
            let message = self.message(Kind::ProbeRequest, h.id, seq, u64::from(target), 0);
            out.push(Action::Send { to, message });
            self.stats.probes += 1;
        }
    }

    /// Peer `r` asks us to probe peer `target` for it (request `seq`): we
    /// ask the target, and answer `r` when we hear it.
    pub(super) fn probe_for(&mut self, r: usize, target: u64, seq: u64, now: Instant) {
        let Some(t) = u16::try_from(target).ok().and_then(|id| self.slot(id)) else {
            return;
        };
        if t == r || self.peers[t].liveness.gone() || self.peers[t].target().is_none() {
            return;
        }
        let p = &mut self.peers[t];
        let requests = &mut p.rare().requests;
        requests.retain(|&(who, _, _)| who != r);
        if requests.len() == REQUESTS {
            requests.remove(0);
        }
        requests.push((r, seq, now));
        if p.next_heartbeat.get().is_none_or(|at| at > now) {
            self.schedule(t, now);
        }
    }

    /// Peer `t` was heard: every peer that asked us to probe it learns it
    /// is up.
    pub(super) fn vouch(&mut self, t: usize, now: Instant, out: &mut Vec<Action>) {
        let Some(rare) = &mut self.peers[t].rare else {
            return;
        };
        if rare.requests.is_empty() {
            return;
        }
        let fresh = self.params.overdue_after();
        let requests = std::mem::take(&mut rare.requests);
        let target = u64::from(self.peers[t].id);
        for (r, seq, at) in requests {
            let p = &self.peers[r];
            let Some(to) = p.target() else { continue };
            if now.saturating_duration_since(at) > fresh || p.liveness.gone() {
                continue;
            }
            self.seq += 1;
            let message = self.message(Kind::ProbeReply, p.id, self.seq, target, seq);
            out.push(Action::Send { to, message });
            self.stats.probes += 1;
        }
    }

    /// A peer answers our request `acked` to probe peer `target`: it heard
    /// the target since, so the target is up.
    pub(super) fn vouched(&mut self, target: u64, acked: u64, now: Instant, out: &mut Vec<Action>) {
        let Some(k) = self
            .indirect
            .iter()
            .position(|&(seq, t)| seq == acked && u64::from(self.peers[t].id) == target)
        else {
            return;
        };
        let (_, t) = self.indirect.remove(k).expect("found");
        // READY needs every peer heard directly: word of others counts
        // only after it, and never for a peer taken for down.
        if !matches!(self.state, State::Ready { .. }) || self.peers[t].liveness.gone() {
            return;
        }
        let p = &mut self.peers[t];
        p.rare().vouched = Some(now);
        p.stop_probing();
        self.watch(t);
        self.set_liveness(t, Liveness::Alive, now, out);
    }

    /// Puts peer `i`'s silence under watch if it is not: it is overdue
    /// [`Params::overdue_after`] after it was last known alive.
    pub(super) fn watch(&mut self, i: usize) {
        if !self.peers[i].silence_watched
            && let Some(t) = self.alive_at(i)
        {
            self.peers[i].silence_watched = true;
            let at = t + self.params.overdue_after();
            self.timers.push(at, i, super::timers::Timer::Silence);
        }
    }

    /// A datagram of ours to peer `to`, of `kind`.
    pub(super) fn message(&self, kind: Kind, to: u16, seq: u64, echo: u64, acked: u64) -> Message {
        Message {
            kind,
            flags: self.flags,
            ask: false,
            hosts: self.hosts,
            from: self.me,
            to,
            incarnation: self.incarnation,
            seq,
            echo,
            acked,
        }
    }
}
