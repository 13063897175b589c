//! The node's record of one other peer: where it is, what it has said,
//! and what is due to it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Mismatch;
use super::detector::Liveness;
use super::retransmit::Rtt;
use crate::hosts::Host;
use crate::wire::Flags;

/// Our record of one other peer.
#[derive(Clone, Debug)]
pub(super) struct Peer {
    /// Entry id, 1-based.
    pub(super) id: u16,
    /// The entry as written, and its line in the hosts file.
    pub(super) name: String,
    pub(super) line: usize,
    pub(super) host: Host,
    pub(super) port: u16,
    /// Where the name resolves; empty while unknown.
    pub(super) addrs: Vec<SocketAddr>,
    /// Where the peer was last heard from, among `addrs`.
    pub(super) reply_to: Option<SocketAddr>,
    /// A resolution is under way.
    pub(super) resolving: bool,
    /// When to resolve the name (again).
    pub(super) resolve_at: Option<Instant>,
    pub(super) resolve_backoff: Duration,
    pub(super) last_resolve: Option<Instant>,
    /// When the lookup under way started.
    pub(super) resolve_started: Option<Instant>,
    pub(super) resolve_error: Option<String>,
    /// The peer's incarnation as last heard.
    pub(super) incarnation: Option<u64>,
    /// When a heartbeat of this incarnation last arrived.
    pub(super) heartbeat: Option<Instant>,
    /// When an acknowledgement of ours by this incarnation last arrived.
    pub(super) ack: Option<Instant>,
    /// The highest of our sequence numbers it acknowledged.
    pub(super) acked_seq: u64,
    /// Its flags as last heard.
    pub(super) flags: Flags,
    pub(super) last_heard: Option<Instant>,
    /// When its latest datagram reached our socket: what decides whether
    /// it crossed our question, however long it then waited for us.
    pub(super) arrived: Option<Instant>,
    /// What the failure detector makes of it.
    pub(super) liveness: Liveness,
    /// When a peer we asked to probe it said it answered.
    pub(super) vouched: Option<Instant>,
    /// Peers that asked us to probe it: (their index, their request, when).
    pub(super) requests: Vec<(usize, u64, Instant)>,
    /// Our leave has not been acknowledged by it yet.
    pub(super) leave_pending: bool,
    /// A silence deadline for it is in the node's timers.
    pub(super) silence_watched: bool,
    /// Overdue (not heard for [`super::Params::overdue_after`]): asked for
    /// an answer until it is heard.
    pub(super) probing: bool,
    /// When it entered its current stage of silence (overdue, suspect):
    /// the next stage comes no sooner than its share of time after this.
    pub(super) stage_since: Option<Instant>,
    /// When our next heartbeat to it is due: the next retry while we ask
    /// it for an answer, the next at the interval otherwise.
    pub(super) next_heartbeat: Option<Instant>,
    /// The sequence number of its latest heartbeat we have not
    /// acknowledged yet: our next datagram to it carries the
    /// acknowledgement.
    pub(super) ack_due: Option<u64>,
    /// It asked for an answer: send one in this transition.
    pub(super) answer: bool,
    /// Our current incarnation has acknowledged a heartbeat of its
    /// current one: until then it cannot have exchanged with us, asked or
    /// not.
    pub(super) acknowledged: bool,
    /// Our latest questions to it, unanswered (sequence number, when
    /// sent), so that an answer to any of them times its round trip.
    pub(super) asked: [Option<(u64, Instant)>; 4],
    /// Its retry waits in the node's queue for a token of the pacer.
    pub(super) paced: bool,
    /// Asking heartbeats sent to it since its last acknowledgement.
    pub(super) tries: u32,
    /// The round trip to it.
    pub(super) rtt: Rtt,
    /// Datagrams with another hosts list or secret came from its address.
    pub(super) mismatch: Option<Mismatch>,
    /// When a mismatch of this peer was last warned about.
    pub(super) mismatch_warned: Option<Instant>,
    /// Datagrams claiming to be from it came from this other address.
    pub(super) wrong_source: Option<SocketAddr>,
    /// The highest heartbeat sequence number heard from this incarnation.
    pub(super) heartbeat_seq: u64,
}

impl Peer {
    /// Our latest question to it, unanswered, and when it went.
    pub(super) fn probe(&self) -> Option<(u64, Instant)> {
        self.asked
            .iter()
            .flatten()
            .max_by_key(|(seq, _)| *seq)
            .copied()
    }

    /// Not present for READY: down, or gone before it was READY itself (a
    /// peer that left once READY was there).
    pub(super) fn absent(&self) -> bool {
        match self.liveness {
            Liveness::Down => true,
            Liveness::Left => !self.flags.ready,
            Liveness::Alive | Liveness::Suspect => false,
        }
    }

    pub(super) fn exchanged(&self) -> bool {
        self.heartbeat.is_some() && self.ack.is_some()
    }

    /// Heard within `threshold` before `now`: an exchange from the past is
    /// not presence.
    pub(super) fn heard_within(&self, threshold: Duration, now: Instant) -> bool {
        self.last_heard
            .is_some_and(|t| now.saturating_duration_since(t) < threshold)
    }

    /// It acknowledged a heartbeat carrying our current flags.
    pub(super) fn knows(&self, epoch: u64) -> bool {
        self.acked_seq >= epoch
    }

    pub(super) fn by_name(&self) -> bool {
        matches!(self.host, Host::Name(_))
    }

    /// Where our datagrams to it go.
    pub(super) fn target(&self) -> Option<SocketAddr> {
        self.reply_to.or_else(|| self.addrs.first().copied())
    }

    /// Forgets everything learned from an earlier incarnation.
    pub(super) fn forget(&mut self) {
        self.heartbeat = None;
        self.ack = None;
        self.acked_seq = 0;
        self.heartbeat_seq = 0;
        self.flags = Flags::default();
        self.ack_due = None;
        self.answer = false;
        self.acknowledged = false;
        self.vouched = None;
        self.requests.clear();
        self.rearm();
    }

    /// Forgets the questions asked so far: the next goes on the first
    /// retry schedule.
    pub(super) fn rearm(&mut self) {
        self.asked = Default::default();
        self.tries = 0;
    }
}
