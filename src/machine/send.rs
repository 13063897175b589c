//! Sending: which peers a transition heartbeats, what each heartbeat
//! carries and asks, and when the next one goes.
//!
//! Each peer's next heartbeat is a deadline among the node's
//! [`Timers`](super::timers::Timers); [`Node::send_due`] sends those that
//! are due and the answers owed in one batch, each heartbeat carrying the
//! acknowledgement owed. A peer that has acknowledged us and needs nothing
//! is heartbeated in the node's next round, once an interval; one we wait
//! for is asked again on the schedule of [`retransmit`], within the
//! node-wide pacer.

use std::time::{Duration, Instant};

use super::detector::Liveness;
use super::peer::Peer;
use super::retransmit::Heard;
use super::timers::Timer;
use super::{Action, Node, When, jitter, retransmit};
use crate::hosts::Host;
use crate::wire::{Kind, Message};

impl Node {
    /// Our next heartbeat to peer `i` goes at `at`.
    pub(super) fn schedule(&mut self, i: usize, at: Instant) {
        self.peers[i].next_heartbeat = When::from(at);
        self.timers.push(at, i, Timer::Heartbeat);
    }

    /// Our network has lost none of our questions lately: a peer never
    /// heard from has not started. A question lost is known once its
    /// retry, a timeout later, is answered: three timeouts leave room for
    /// a peer slower than most.
    pub(super) fn lossless(&self, now: Instant) -> bool {
        let timeout = retransmit::answer_timeout(&self.params, self.rtt.timeout());
        self.loss.none_seen(timeout * 3, now)
    }

    /// Starts asking peer `i` afresh: now, on the first retry schedule.
    pub(super) fn rearm(&mut self, i: usize, now: Instant) {
        self.peers[i].rearm();
        self.schedule(i, now);
    }

    /// Peer `i`'s deadline for `timer`, as its record says: what a heap
    /// entry is checked against.
    pub(super) fn deadline(&self, i: usize, timer: Timer) -> Option<Instant> {
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
    pub(super) fn settle_timers(&mut self) {
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
    pub(super) fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
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

    /// Whether we ask `p` for an acknowledgement: until it has acknowledged
    /// this incarnation, while it is overdue, and while it waits for our
    /// flags (it runs with `--barrier`) until it has acknowledged them.
    pub(super) fn awaits(&self, p: &Peer) -> bool {
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
    pub(super) fn next_round(&mut self, now: Instant) -> Instant {
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
    pub(super) fn crossed(&self, p: &Peer, now: Instant) -> bool {
        let srtt = p.rtt.srtt().or(self.rtt.srtt());
        p.probe(self.seq).is_some_and(|(_, sent)| {
            p.arrived.get().unwrap_or(now) < sent + retransmit::crossing_window(&self.params, srtt)
        })
    }

    /// The measured retransmission timeout to `p`, or the node's.
    pub(super) fn rtt_of(&self, p: &Peer) -> Option<Duration> {
        p.rtt.timeout().or(self.rtt.timeout())
    }

    /// Sends every heartbeat that is due or asked for, each carrying the
    /// acknowledgement we owe, and schedules the next one: the next retry
    /// while we ask the peer for an answer, at the interval otherwise.
    /// With `answers_only`, only the answers owed are sent (the node is
    /// leaving).
    pub(super) fn send_due(&mut self, answers_only: bool, now: Instant, out: &mut Vec<Action>) {
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
            let heard = p.heard(&self.params, now);
            self.stats.heartbeats += 1;
            if ask && p.tries > 0 {
                self.stats.retries += 1;
                self.stats.retries_unheard += u64::from(heard == Heard::No);
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
}
