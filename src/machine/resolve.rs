//! Names: resolving the peers listed by name (off the loop, by the
//! driver), again when they fall silent or are heard from elsewhere, and
//! what a new address changes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::timers::Timer;
use super::{Action, Event, Node, canonical, jitter};

/// The least time between two resolutions of one peer's name.
const RESOLVE_MIN_GAP: Duration = Duration::from_millis(250);
/// At most this many addresses are kept for one name.
pub(super) const MAX_ADDRS: usize = 8;

impl Node {
    /// Peer `i`'s name is resolved (again) at `at`.
    pub(super) fn schedule_resolve(&mut self, i: usize, at: Instant) {
        let Some(r) = &mut self.peers[i].resolution else {
            return;
        };
        r.at = Some(at);
        self.timers.push(at, i, Timer::Resolve);
    }

    pub(super) fn resolved(
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

    pub(super) fn resolved_addrs(
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
    pub(super) fn same_address(&self, i: usize, out: &mut Vec<Action>) {
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

    /// Resolve peer `i`'s name again soon, at most once per
    /// [`RESOLVE_MIN_GAP`].
    pub(super) fn resolve_soon(&mut self, i: usize, now: Instant) {
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
}
