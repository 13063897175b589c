//! Membership: how peers come and go, as the events name them, and the
//! graceful leave.
//!
//! Each change of a peer is reported once: `exchanged` (the first
//! exchange with an incarnation), `suspect` and `down` (from the
//! [detector](super::detector)), `up` (heard again after either, or after
//! it left), `restarted` (a new incarnation), `left` (it said it leaves).
//!
//! Leaving: on a stop signal, at the timeout, or when the command run
//! after READY ends, a node tells every peer present that it leaves, on
//! the round trip until each acknowledges or [`LEAVE_WAIT`] has passed, and
//! then exits. The others report it `left`, not `down`, and take no more
//! from that incarnation: its process may still answer for a moment.

use std::net::SocketAddr;
use std::time::Instant;

use super::detector::{LEAVE_WAIT, Liveness};
use super::{Action, Node, PeerRef, Reason, State, When};
use crate::wire::{Kind, Message};

impl Node {
    /// Peer `i` as events name it.
    pub(super) fn who(&self, i: usize) -> PeerRef {
        let p = &self.peers[i];
        PeerRef {
            name: p.listed.name.clone(),
            index: p.id,
            addr: p.target(),
            incarnation: p.incarnation(),
        }
    }

    /// Peer `i` says it leaves: acknowledged, reported once, and no longer
    /// asked anything.
    pub(super) fn peer_left(
        &mut self,
        i: usize,
        from: SocketAddr,
        msg: &Message,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.answer(from, Kind::Ack, msg, msg.incarnation, out);
        let p = &mut self.peers[i];
        p.silence_watched = false;
        p.stop_probing();
        p.next_heartbeat = When::NEVER;
        p.ack_sent();
        p.answer = false;
        if let Some(r) = &mut p.rare {
            r.requests.clear();
        }
        self.set_liveness(i, Liveness::Left, now, out);
    }

    /// Starts telling every peer present that we leave.
    pub(super) fn start_leaving(&mut self, now: Instant) {
        if self.leaving.is_some() {
            return;
        }
        self.leaving = Some((self.seq + 1, now + LEAVE_WAIT));
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            if p.incarnation().is_some() && p.target().is_some() && !p.liveness.gone() {
                self.peers[i].leave_pending = true;
                self.leave_waiting += 1;
                self.rearm(i, now);
            }
        }
    }

    /// Whether our leave still goes to peer `i` at `now`.
    pub(super) fn leave_due(&self, i: usize, now: Instant) -> bool {
        self.peers[i].leave_pending && self.leaving.is_some_and(|(_, until)| now < until)
    }

    /// Peer `i` acknowledged our sequence number `acked`: if it is our
    /// leave, one fewer to wait for.
    pub(super) fn leave_acknowledged(&mut self, i: usize, acked: u64) {
        if let Some((first, _)) = self.leaving
            && acked >= first
            && self.peers[i].leave_pending
        {
            self.peers[i].leave_pending = false;
            self.leave_waiting -= 1;
        }
    }

    /// Leaves, then exits for `reason`: at once if nobody is there to
    /// tell, else once every peer told has acknowledged, or at the end of
    /// [`LEAVE_WAIT`].
    pub(super) fn depart(&mut self, reason: Reason, now: Instant, out: &mut Vec<Action>) {
        self.start_leaving(now);
        match self.leaving {
            Some((_, until)) if self.leave_waiting > 0 => {
                self.state = State::Draining { until, reason };
            }
            _ => self.finish(reason, now, out),
        }
    }

    /// Every peer told has acknowledged our leave: the node may go.
    pub(super) fn left_everyone(&self) -> bool {
        self.leaving.is_some() && self.leave_waiting == 0
    }
}
