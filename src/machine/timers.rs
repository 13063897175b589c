//! The node's per-peer deadlines in one heap, so that a transition costs
//! the same whatever the number of peers: only what is due is looked at.
//!
//! An entry is a hint, not a promise: the peer's record holds the real
//! deadline, and an entry that no longer matches it (the heartbeat was
//! rescheduled, the peer was heard since) is dropped or moved when it
//! reaches the top. Entries are never removed in place, so a record may
//! leave several behind; the heap is rebuilt from the records when it grows
//! past a few entries per peer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The next heartbeat to the peer (a retry, or the next at the
    /// interval).
    Heartbeat,
    /// Resolve the peer's name (again).
    Resolve,
    /// The peer becomes silent if not heard by then.
    Silence,
}

/// Deadlines of peers, by their index in the node's peer list.
#[derive(Clone, Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u32, Timer)>>,
}

impl Timers {
    pub(super) fn push(&mut self, at: Instant, peer: usize, timer: Timer) {
        let peer = u32::try_from(peer).unwrap_or(u32::MAX);
        self.heap.push(Reverse((at, peer, timer)));
    }

    /// The earliest entry's instant: the node's next peer deadline once
    /// the stale entries on top are settled.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, ..))| *at)
    }

    /// The earliest entry.
    pub(super) fn peek(&self) -> Option<(Instant, usize, Timer)> {
        self.heap
            .peek()
            .map(|Reverse((at, peer, timer))| (*at, *peer as usize, *timer))
    }

    pub(super) fn pop(&mut self) {
        self.heap.pop();
    }

    /// Takes the earliest entry if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, Timer)> {
        let Reverse((at, peer, timer)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        Some((at, peer as usize, timer))
    }

    /// Too many stale entries for `peers` peers: time to rebuild.
    pub(super) fn bloated(&self, peers: usize) -> bool {
        self.heap.len() > 4 * peers + 64
    }

    pub(super) fn clear(&mut self) {
        self.heap.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_what_is_due_earliest_first() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut t = Timers::default();
        t.push(t0 + 3 * ms, 2, Timer::Silence);
        t.push(t0 + ms, 7, Timer::Heartbeat);
        t.push(t0 + 2 * ms, 1, Timer::Resolve);
        assert_eq!(t.next(), Some(t0 + ms));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(t.pop_due(t0 + 2 * ms), Some((t0 + ms, 7, Timer::Heartbeat)));
        assert_eq!(
            t.pop_due(t0 + 2 * ms),
            Some((t0 + 2 * ms, 1, Timer::Resolve))
        );
        assert_eq!(t.pop_due(t0 + 2 * ms), None);
        assert_eq!(t.len(), 1);
        assert!(!t.bloated(0));
    }
}
