//! Receiving: the checks a datagram passes before anything is recorded,
//! then what it changes: the peer's incarnation, what it acknowledged (the
//! round trip of the very question answered, and what that says about
//! loss), and when the peer is asked again.
//!
//! A datagram that fails a check changes nothing but a counter, and may
//! be answered within a node-wide [`Budget`] (a stale notice to an earlier
//! incarnation, an acknowledgement to another hosts list) so that the node
//! is never a reflector.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::detector::Liveness;
use super::peer::Peer;
use super::{
    Action, DROP_WARNING_EVERY, Drop, Event, Mismatch, Node, Reason, State, When, canonical,
    random, retransmit,
};
use crate::wire::{DecodeError, Kind, Message};

/// Mask of the random part of the step above a known incarnation that a
/// process restarted behind the clock takes.
const REINCARNATION_STEP: u64 = (1 << 24) - 1;

impl Node {
    /// A datagram from `from` that reached our socket at `arrived`:
    /// checked, then recorded.
    pub(super) fn datagram(
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
    pub(super) fn acknowledged(&mut self, i: usize, acked: u64, heard: bool, now: Instant) {
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
    pub(super) fn heard(&mut self, i: usize, now: Instant) {
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

    /// Whether a datagram from `from` may speak for `p`. Its own address
    /// does; with a secret any address does, since the MAC proves a member
    /// sent it. Without a secret, a source of a family in which `p` has no
    /// address, on its port, does too: a host reaches a peer of the other
    /// family from its address of that family, which no list can name.
    pub(super) fn believes(&self, p: &Peer, from: SocketAddr) -> bool {
        let addrs = p.addrs();
        addrs.contains(&from)
            || self.params.authenticated
            || (from.port() == p.listed.port
                && !addrs.is_empty()
                && addrs.iter().all(|a| a.is_ipv4() != from.is_ipv4()))
    }

    /// Answers `msg` from `to` with an acknowledgement or a stale notice
    /// carrying `echo`.
    pub(super) fn answer(
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
    pub(super) fn reincarnate(
        &mut self,
        i: usize,
        known: u64,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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

    pub(super) fn dropped(
        &mut self,
        reason: Drop,
        from: SocketAddr,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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
    pub(super) fn mismatch(
        &mut self,
        from: SocketAddr,
        what: Mismatch,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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
}

/// At most `max` uses in each `window`.
#[derive(Clone, Debug)]
pub(super) struct Budget {
    max: u32,
    window: Duration,
    start: Option<Instant>,
    used: u32,
}

impl Budget {
    pub(super) fn new(max: u32, window: Duration) -> Budget {
        Budget {
            max,
            window,
            start: None,
            used: 0,
        }
    }

    /// Takes one use if any is left in the current window.
    pub(super) fn take(&mut self, now: Instant) -> bool {
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
