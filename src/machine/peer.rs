//! The node's record of one other peer: where it is, what it has said,
//! and what is due to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::detector::Liveness;
use super::retransmit::{Heard, Rtt};
use super::{Mismatch, Params, When};
use crate::hosts::{Entry, Host};
use crate::wire::Flags;

/// Questions to a peer remembered for timing their answers.
const QUESTIONS: usize = 4;

/// An entry of the hosts list, as every node that lists it shares it: one
/// node in a process, but all of them in a simulation, where a record of
/// its own in every node's record of every peer would be most of the
/// memory.
#[derive(Debug)]
pub(super) struct Listed {
    /// The entry as written, and its line in the hosts file.
    pub(super) name: String,
    pub(super) line: usize,
    pub(super) host: Host,
    pub(super) port: u16,
    /// Its address, for an entry written as one.
    fixed: Option<SocketAddr>,
}

impl Listed {
    pub(super) fn new(e: &Entry) -> Listed {
        Listed {
            name: e.text.clone(),
            line: e.line,
            host: e.host.clone(),
            port: e.port,
            fixed: match e.host {
                Host::Ip(ip) => Some(SocketAddr::new(ip, e.port)),
                Host::Name(_) => None,
            },
        }
    }
}

/// The lookup of a peer listed by name.
#[derive(Clone, Debug)]
pub(super) struct Resolution {
    /// Where the name resolves; empty while unknown.
    pub(super) addrs: Vec<SocketAddr>,
    /// A resolution is under way.
    pub(super) resolving: bool,
    /// When to resolve the name (again).
    pub(super) at: Option<Instant>,
    pub(super) backoff: Duration,
    pub(super) last: Option<Instant>,
    /// When the lookup under way started.
    pub(super) started: Option<Instant>,
    pub(super) error: Option<String>,
}

impl Resolution {
    /// Not looked up yet; the first retry of a failed lookup waits
    /// `backoff`.
    pub(super) fn new(backoff: Duration) -> Resolution {
        Resolution {
            addrs: Vec::new(),
            resolving: false,
            at: None,
            backoff,
            last: None,
            started: None,
            error: None,
        }
    }
}

/// What a peer's record seldom holds, kept apart so that the record stays
/// small.
#[derive(Clone, Debug, Default)]
pub(super) struct Rare {
    /// Datagrams with another hosts list or secret came from its address.
    pub(super) mismatch: Option<Mismatch>,
    /// When a mismatch of this peer was last warned about.
    pub(super) mismatch_warned: Option<Instant>,
    /// Datagrams claiming to be from it came from this other address.
    pub(super) wrong_source: Option<SocketAddr>,
    /// Peers that asked us to probe it: (their index, their request, when).
    pub(super) requests: Vec<(usize, u64, Instant)>,
    /// When a peer we asked to probe it said it answered.
    pub(super) vouched: Option<Instant>,
    /// When it entered its current stage of silence (overdue, suspect):
    /// the next stage comes no sooner than its share of time after this.
    pub(super) stage_since: Option<Instant>,
    /// Where it was last heard from, when that is none of its addresses
    /// (with a secret, or in the other address family).
    pub(super) reply_to: Option<SocketAddr>,
}

impl Rare {
    /// Nothing held: no need for the room.
    fn empty(&self) -> bool {
        self.mismatch.is_none()
            && self.mismatch_warned.is_none()
            && self.wrong_source.is_none()
            && self.requests.is_empty()
            && self.vouched.is_none()
            && self.stage_since.is_none()
            && self.reply_to.is_none()
    }
}

/// Where a peer was last heard from, in a byte or two: a socket address
/// takes 32, and is nearly always one of the peer's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// Not heard from (since its addresses changed).
    Unheard,
    /// At this of its addresses.
    Listed(u8),
    /// Elsewhere: the address is among its rare findings.
    Elsewhere,
}

/// Our record of one other peer.
#[derive(Clone, Debug)]
pub(super) struct Peer {
    /// Entry id, 1-based.
    pub(super) id: u16,
    /// Its entry.
    pub(super) listed: Arc<Listed>,
    /// Its name's lookup, for an entry written as a name.
    pub(super) resolution: Option<Box<Resolution>>,
    /// Where the peer was last heard from: see [`Peer::reply_to`].
    pub(super) reply: Reply,
    /// The peer's incarnation as last heard, if `known` (see
    /// [`Peer::incarnation`]).
    incarnation: u64,
    known: bool,
    /// A heartbeat of this incarnation has arrived.
    pub(super) heartbeat: bool,
    /// An acknowledgement of ours by this incarnation has arrived.
    pub(super) ack: bool,
    /// The highest of our sequence numbers it acknowledged.
    pub(super) acked_seq: u64,
    /// Its flags as last heard.
    pub(super) flags: Flags,
    pub(super) last_heard: When,
    /// When its latest datagram reached our socket: what decides whether
    /// it crossed our question, however long it then waited for us.
    pub(super) arrived: When,
    /// What the failure detector makes of it.
    pub(super) liveness: Liveness,
    /// Our leave has not been acknowledged by it yet.
    pub(super) leave_pending: bool,
    /// A silence deadline for it is in the node's timers.
    pub(super) silence_watched: bool,
    /// Overdue (not heard for [`super::Params::overdue_after`]): asked for
    /// an answer until it is heard.
    pub(super) probing: bool,
    /// When our next heartbeat to it is due: the next retry while we ask
    /// it for an answer, the next at the interval otherwise.
    pub(super) next_heartbeat: When,
    /// The sequence number of its latest heartbeat we have not
    /// acknowledged yet, if `owed`: our next datagram to it carries the
    /// acknowledgement.
    ack_due: u64,
    owed: bool,
    /// It asked for an answer: send one in this transition.
    pub(super) answer: bool,
    /// Our current incarnation has acknowledged a heartbeat of its
    /// current one: until then it cannot have exchanged with us, asked or
    /// not.
    pub(super) acknowledged: bool,
    /// Our latest questions to it, unanswered, so that an answer to any
    /// of them times its round trip: when each was sent, and the low half
    /// of its sequence number (see [`Peer::asked`]).
    asked_at: [When; QUESTIONS],
    asked_seq: [u32; QUESTIONS],
    /// Its retry waits in the node's queue for a token of the pacer.
    pub(super) paced: bool,
    /// Asking heartbeats sent to it since its last acknowledgement.
    pub(super) tries: u32,
    /// The round trip to it.
    pub(super) rtt: Rtt,
    /// The highest heartbeat sequence number heard from this incarnation.
    pub(super) heartbeat_seq: u64,
    /// Mismatches, a wrong source, requests to probe it: mostly nothing.
    pub(super) rare: Option<Box<Rare>>,
}

impl Peer {
    /// A record that has heard nothing and asked nothing yet.
    pub(super) fn new(id: u16, listed: Arc<Listed>, resolution: Option<Box<Resolution>>) -> Peer {
        Peer {
            id,
            listed,
            resolution,
            reply: Reply::Unheard,
            incarnation: 0,
            known: false,
            heartbeat: false,
            ack: false,
            acked_seq: 0,
            flags: Flags::default(),
            last_heard: When::NEVER,
            arrived: When::NEVER,
            liveness: Liveness::Alive,
            leave_pending: false,
            silence_watched: false,
            probing: false,
            next_heartbeat: When::NEVER,
            ack_due: 0,
            owed: false,
            answer: false,
            acknowledged: false,
            asked_at: [When::NEVER; QUESTIONS],
            asked_seq: [0; QUESTIONS],
            paced: false,
            tries: 0,
            rtt: Rtt::default(),
            heartbeat_seq: 0,
            rare: None,
        }
    }

    /// The peer's incarnation as last heard. (An `Option<u64>` would take
    /// sixteen bytes, where the flag beside the number takes one.)
    pub(super) fn incarnation(&self) -> Option<u64> {
        self.known.then_some(self.incarnation)
    }

    pub(super) fn set_incarnation(&mut self, incarnation: u64) {
        self.incarnation = incarnation;
        self.known = true;
    }

    /// The sequence number of its latest heartbeat we have not
    /// acknowledged yet.
    pub(super) fn ack_due(&self) -> Option<u64> {
        self.owed.then_some(self.ack_due)
    }

    /// Its heartbeat `seq` is to be acknowledged.
    pub(super) fn owe_ack(&mut self, seq: u64) {
        self.ack_due = seq;
        self.owed = true;
    }

    /// Our datagram to it carried the acknowledgement owed, or none is
    /// owed any more.
    pub(super) fn ack_sent(&mut self) {
        self.owed = false;
    }

    /// Our latest question to it, unanswered, and when it went; `latest`
    /// is our latest sequence number.
    pub(super) fn probe(&self, latest: u64) -> Option<(u64, Instant)> {
        self.asked(latest).max_by_key(|(seq, _)| *seq)
    }

    /// Our questions to it, unanswered: (sequence number, when sent).
    /// Only the low half of a question's number is kept, and the rest is
    /// that of `latest`, our latest, less the difference: exact for any
    /// question among our last 2³² datagrams, which every question still
    /// remembered is (there are four, and each peer is asked at least
    /// once an interval).
    pub(super) fn asked(&self, latest: u64) -> impl Iterator<Item = (u64, Instant)> + '_ {
        self.asked_at
            .iter()
            .zip(self.asked_seq)
            .filter_map(move |(at, low)| {
                let seq = latest.wrapping_sub(u64::from((latest as u32).wrapping_sub(low)));
                at.get().map(|at| (seq, at))
            })
    }

    /// We asked it (again): our question `seq` went at `now`, counted in
    /// `tries` and remembered in the place of the oldest.
    pub(super) fn ask(&mut self, seq: u64, now: Instant) {
        self.tries = self.tries.saturating_add(1);
        let k = self.tries as usize % QUESTIONS;
        self.asked_at[k] = When::from(now);
        self.asked_seq[k] = seq as u32;
    }

    /// Its answer covered every question remembered.
    pub(super) fn answered(&mut self) {
        self.asked_at = [When::NEVER; QUESTIONS];
    }

    /// Not present for READY: down, or gone before it was READY itself. A
    /// peer that left once READY was there: its leave counts for READY as
    /// long as any datagram of it would (`Node::none_silent`), and for a
    /// barrier its READY stands.
    pub(super) fn absent(&self) -> bool {
        match self.liveness {
            Liveness::Down => true,
            Liveness::Left => !self.flags.ready,
            Liveness::Alive | Liveness::Suspect => false,
        }
    }

    pub(super) fn exchanged(&self) -> bool {
        self.heartbeat && self.ack
    }

    /// Heard within `threshold` before `now`: an exchange from the past is
    /// not presence.
    pub(super) fn heard_within(&self, threshold: Duration, now: Instant) -> bool {
        self.last_heard
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) < threshold)
    }

    /// When it was heard last, as its retries are timed: within the
    /// interval, within the silence threshold, or not.
    pub(super) fn heard(&self, params: &Params, now: Instant) -> Heard {
        if self.heard_within(params.interval, now) {
            Heard::Recently
        } else if self.heard_within(params.silent_after(), now) {
            Heard::Lately
        } else {
            Heard::No
        }
    }

    /// It acknowledged a heartbeat carrying our current flags.
    pub(super) fn knows(&self, epoch: u64) -> bool {
        self.acked_seq >= epoch
    }

    pub(super) fn by_name(&self) -> bool {
        self.resolution.is_some()
    }

    /// Where it may be: its address as listed, or where its name resolves
    /// (nowhere while unknown).
    pub(super) fn addrs(&self) -> &[SocketAddr] {
        match (&self.listed.fixed, &self.resolution) {
            (Some(addr), _) => std::slice::from_ref(addr),
            (None, Some(r)) => &r.addrs,
            (None, None) => &[],
        }
    }

    /// Where our datagrams to it go.
    pub(super) fn target(&self) -> Option<SocketAddr> {
        self.reply_to().or_else(|| self.addrs().first().copied())
    }

    /// Where it was last heard from.
    pub(super) fn reply_to(&self) -> Option<SocketAddr> {
        match self.reply {
            Reply::Unheard => None,
            Reply::Listed(k) => self.addrs().get(usize::from(k)).copied(),
            Reply::Elsewhere => self.rare.as_ref().and_then(|r| r.reply_to),
        }
    }

    /// It was heard from `from` (or, with none, its addresses changed
    /// to ones it was not heard from).
    pub(super) fn set_reply_to(&mut self, from: Option<SocketAddr>) {
        let listed = from.and_then(|a| self.addrs().iter().position(|b| *b == a));
        let elsewhere = from.filter(|_| listed.is_none());
        self.reply = match (from, listed) {
            (None, _) => Reply::Unheard,
            (Some(_), Some(k)) => Reply::Listed(u8::try_from(k).unwrap_or(u8::MAX)),
            (Some(_), None) => Reply::Elsewhere,
        };
        if elsewhere.is_some() {
            self.rare().reply_to = elsewhere;
        } else if let Some(r) = &mut self.rare {
            r.reply_to = None;
        }
    }

    /// When its name is to be resolved (again), unless a lookup is under
    /// way.
    pub(super) fn resolve_at(&self) -> Option<Instant> {
        self.resolution
            .as_ref()
            .filter(|r| !r.resolving)
            .and_then(|r| r.at)
    }

    /// A lookup of its name is under way.
    pub(super) fn resolving(&self) -> bool {
        self.resolution.as_ref().is_some_and(|r| r.resolving)
    }

    /// When a peer we asked to probe it said it answered.
    pub(super) fn vouched(&self) -> Option<Instant> {
        self.rare.as_ref().and_then(|r| r.vouched)
    }

    /// When it entered its current stage of silence.
    pub(super) fn stage_since(&self) -> Option<Instant> {
        self.rare.as_ref().and_then(|r| r.stage_since)
    }

    /// Peers that asked us to probe it.
    pub(super) fn requests(&self) -> &[(usize, u64, Instant)] {
        self.rare.as_ref().map_or(&[], |r| &r.requests)
    }

    /// What it seldom holds, made room for.
    pub(super) fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// It was heard from where it should be: what its address said of it
    /// before no longer holds. The warning's timestamp stays, so that a
    /// peer flapping between the two is not warned about more often.
    pub(super) fn believed(&mut self) {
        if let Some(r) = &mut self.rare {
            r.mismatch = None;
            r.wrong_source = None;
            if r.empty() {
                self.rare = None;
            }
        }
    }

    /// It is no longer overdue: what its silence went through is over.
    pub(super) fn stop_probing(&mut self) {
        self.probing = false;
        if let Some(r) = &mut self.rare {
            r.stage_since = None;
        }
    }

    /// Forgets everything learned from an earlier incarnation.
    pub(super) fn forget(&mut self) {
        self.heartbeat = false;
        self.ack = false;
        self.acked_seq = 0;
        self.heartbeat_seq = 0;
        self.flags = Flags::default();
        self.owed = false;
        self.answer = false;
        self.acknowledged = false;
        if let Some(r) = &mut self.rare {
            r.requests.clear();
            r.vouched = None;
        }
        self.rearm();
    }

    /// Forgets the questions asked so far: the next goes on the first
    /// retry schedule.
    pub(super) fn rearm(&mut self) {
        self.answered();
        self.tries = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Questions are kept by the low half of their numbers: the whole
    /// number comes back from our latest, across a carry into the high
    /// half too.
    #[test]
    fn a_question_comes_back_with_its_whole_number() {
        let e = crate::hosts::parse("10.0.0.1:7610\n", 7610).unwrap();
        let mut p = Peer::new(1, Arc::new(Listed::new(&e[0])), None);
        let t0 = Instant::now();
        let before = (1u64 << 32) - 3;
        p.ask(before, t0);
        p.ask(before + 5, t0 + Duration::from_millis(1));
        let latest = before + 8;
        let mut asked: Vec<_> = p.asked(latest).collect();
        asked.sort();
        assert_eq!(
            asked,
            vec![(before, t0), (before + 5, t0 + Duration::from_millis(1))]
        );
        assert_eq!(
            p.probe(latest),
            Some((before + 5, t0 + Duration::from_millis(1)))
        );
        p.answered();
        assert_eq!(p.probe(latest), None);
    }
}
