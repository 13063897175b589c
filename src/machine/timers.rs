//! The node's per-peer deadlines in one heap, so that a transition costs
//! the same whatever the number of peers: only what is due is looked at.
//!
//! Each peer has one place in the heap per kind of deadline, found through
//! an index, so that a deadline brought forward moves its entry instead
//! of leaving the old one behind: the heap never holds more than three
//! entries a peer (a node of 10 000 peers keeps its deadlines in under a
//! megabyte).
//!
//! An entry is a hint, not a promise: the peer's record holds the real
//! deadline, and the entry is never later than it. A deadline put off (a
//! heartbeat sent and the next scheduled, the peer heard) keeps its
//! earlier entry, which is moved when it reaches the top: putting off is
//! what every datagram does, and costs nothing here, where moving the
//! entry down the heap at once took a sixth of the simulator's time.

use std::time::Instant;

use super::When;

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

const KINDS: usize = 3;
const TIMERS: [Timer; KINDS] = [Timer::Heartbeat, Timer::Resolve, Timer::Silence];
/// Not in the heap.
const ABSENT: u32 = u32::MAX;

/// Deadlines of peers, by their index in the node's peer list: a binary
/// heap of (when, slot), earliest first, where a slot is a peer's deadline
/// of one kind (`peer * 3 + kind`), so that deadlines at one instant come
/// by peer, then by kind.
#[derive(Clone, Debug, Default)]
pub(super) struct Timers {
    heap: Vec<Entry>,
    /// Where each slot's entry is in `heap`, or [`ABSENT`].
    at: Vec<u32>,
}

/// A heap entry: its instant's bits, high and low, then its slot, in
/// twelve bytes (a `When` beside a slot would be padded to sixteen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry(u32, u32, u32);

impl Entry {
    fn new(at: When, slot: u32) -> Entry {
        let bits = at.to_bits();
        Entry((bits >> 32) as u32, bits as u32, slot)
    }

    fn at(self) -> When {
        When::from_bits((u64::from(self.0) << 32) | u64::from(self.1))
    }

    fn slot(self) -> usize {
        self.2 as usize
    }
}

impl Timers {
    /// Room for the deadlines of `peers` peers: a place for each kind, and
    /// a heartbeat and a silence each in the heap (a name's resolution
    /// makes more room when it needs it).
    pub(super) fn new(peers: usize) -> Timers {
        let mut heap = Vec::new();
        heap.reserve_exact(2 * peers);
        Timers {
            heap,
            at: vec![ABSENT; peers * KINDS],
        }
    }

    /// Peer `peer`'s deadline for `timer` is `at`: its entry moves there if
    /// that is sooner (a later one is found when the earlier entry comes
    /// due).
    pub(super) fn push(&mut self, at: Instant, peer: usize, timer: Timer) {
        let at = When::from(at);
        let slot = peer * KINDS + timer as usize;
        let Ok(id) = u32::try_from(slot) else {
            return; // more peers than a hosts list can hold
        };
        if self.at.len() <= slot {
            self.at.resize(slot + 1, ABSENT);
        }
        match self.at[slot] {
            ABSENT => {
                self.heap.push(Entry::new(at, id));
                let k = self.heap.len() - 1;
                self.at[slot] = k as u32;
                self.up(k);
            }
            k => {
                let k = k as usize;
                if at < self.heap[k].at() {
                    self.heap[k] = Entry::new(at, id);
                    self.up(k);
                }
            }
        }
    }

    /// The earliest entry's instant: the node's next peer deadline once
    /// the stale entries on top are settled.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.first().and_then(|e| e.at().get())
    }

    /// The earliest entry.
    pub(super) fn peek(&self) -> Option<(Instant, usize, Timer)> {
        let e = *self.heap.first()?;
        let slot = e.slot();
        Some((e.at().get()?, slot / KINDS, TIMERS[slot % KINDS]))
    }

    /// Removes the earliest entry.
    pub(super) fn pop(&mut self) {
        let Some(first) = self.heap.first() else {
            return;
        };
        self.at[first.slot()] = ABSENT;
        let last = self.heap.pop().expect("not empty");
        if !self.heap.is_empty() {
            self.heap[0] = last;
            self.at[last.slot()] = 0;
            self.down(0);
        }
    }

    /// Takes the earliest entry if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, Timer)> {
        let top = self.peek().filter(|(at, ..)| *at <= now)?;
        self.pop();
        Some(top)
    }

    /// Entries in the heap.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    fn up(&mut self, mut k: usize) {
        while k > 0 {
            let parent = (k - 1) / 2;
            if self.heap[parent] <= self.heap[k] {
                break;
            }
            self.swap(k, parent);
            k = parent;
        }
    }

    fn down(&mut self, mut k: usize) {
        loop {
            let left = 2 * k + 1;
            if left >= self.heap.len() {
                break;
            }
            let right = left + 1;
            let child = if right < self.heap.len() && self.heap[right] < self.heap[left] {
                right
            } else {
                left
            };
            if self.heap[k] <= self.heap[child] {
                break;
            }
            self.swap(k, child);
            k = child;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.at[self.heap[a].slot()] = a as u32;
        self.at[self.heap[b].slot()] = b as u32;
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
    }

    #[test]
    fn a_heartbeat_brought_forward_leaves_no_entry_behind() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut t = Timers::default();
        for k in (5..=100).rev() {
            t.push(t0 + k * ms, 4, Timer::Heartbeat);
        }
        t.push(t0 + 200 * ms, 4, Timer::Heartbeat);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.pop_due(t0 + 200 * ms),
            Some((t0 + 5 * ms, 4, Timer::Heartbeat))
        );
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_put_off_deadline_keeps_its_earlier_entry() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut t = Timers::default();
        t.push(t0 + 3 * ms, 0, Timer::Silence);
        t.push(t0 + 9 * ms, 0, Timer::Silence);
        t.push(t0 + 4 * ms, 0, Timer::Resolve);
        t.push(t0 + 8 * ms, 0, Timer::Resolve);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.pop_due(t0 + 10 * ms),
            Some((t0 + 3 * ms, 0, Timer::Silence))
        );
        assert_eq!(
            t.pop_due(t0 + 10 * ms),
            Some((t0 + 4 * ms, 0, Timer::Resolve))
        );
        t.push(t0 + 2 * ms, 0, Timer::Silence);
        t.push(t0 + ms, 0, Timer::Silence);
        assert_eq!(t.peek(), Some((t0 + ms, 0, Timer::Silence)));
    }

    /// Against a plain list of the entries there should be: whatever is
    /// pushed and popped, the heap gives the earliest entry by instant,
    /// then peer, then kind.
    #[test]
    fn matches_a_list_of_the_entries_kept_in_order() {
        let t0 = Instant::now();
        let mut rng = 7u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut t = Timers::default();
        let mut model: Vec<(Instant, usize, Timer)> = Vec::new();
        for _ in 0..20_000 {
            let roll = next(10);
            if roll < 7 {
                let at = t0 + Duration::from_micros(next(50));
                let peer = next(40) as usize;
                let timer = TIMERS[next(3) as usize];
                match model.iter_mut().find(|e| e.1 == peer && e.2 == timer) {
                    Some(e) if at < e.0 => e.0 = at,
                    Some(_) => {}
                    None => model.push((at, peer, timer)),
                }
                t.push(at, peer, timer);
            } else {
                let now = t0 + Duration::from_micros(next(60));
                let first = model.iter().min().copied();
                let want = first.filter(|e| e.0 <= now);
                if let Some(e) = want {
                    model.retain(|x| *x != e);
                }
                assert_eq!(t.pop_due(now), want);
            }
            assert_eq!(t.len(), model.len());
            assert_eq!(t.peek(), model.iter().min().copied());
        }
    }
}
