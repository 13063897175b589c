//! An instant, or none, in eight bytes.
//!
//! `Option<Instant>` takes sixteen, and a node's record of every peer holds
//! several: a simulation of 10 000 nodes holds 10⁸ such records, where
//! every byte of one is 100 MB. Nanoseconds from a fixed origin keep an
//! instant exactly (for 292 years either side of it), so that nothing
//! computed from one changes.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Instants are counted from here, in the middle of the range.
const MIDDLE: u64 = 1 << 63;

/// Where the counts start: the first instant the process needed one.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// An instant or none, ordered as `Option<Instant>` is (none first).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct When(u64);

impl When {
    pub(super) const NEVER: When = When(0);

    pub(super) fn get(self) -> Option<Instant> {
        let o = origin();
        match self.0 {
            0 => None,
            n if n >= MIDDLE => Some(o + Duration::from_nanos(n - MIDDLE)),
            n => Some(o.checked_sub(Duration::from_nanos(MIDDLE - n)).unwrap_or(o)),
        }
    }

    pub(super) fn is_none(self) -> bool {
        self.0 == 0
    }

    /// As one number, ordered as the instants are: for keys kept in
    /// smaller pieces.
    pub(super) fn to_bits(self) -> u64 {
        self.0
    }

    pub(super) fn from_bits(bits: u64) -> When {
        When(bits)
    }
}

impl From<Instant> for When {
    fn from(t: Instant) -> When {
        let o = origin();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        When(if t >= o {
            MIDDLE.saturating_add(nanos(t - o))
        } else {
            MIDDLE.saturating_sub(nanos(o - t)).max(1)
        })
    }
}

impl From<Option<Instant>> for When {
    fn from(t: Option<Instant>) -> When {
        t.map_or(When::NEVER, When::from)
    }
}

impl fmt::Debug for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_an_instant_exactly_and_orders_as_instants_do() {
        let now = Instant::now();
        let ns = Duration::from_nanos(1);
        let times = [
            now,
            now + ns,
            now - ns,
            now + Duration::from_secs(86_400 * 365),
            now.checked_sub(Duration::from_secs(3600)).unwrap_or(now),
        ];
        for a in times {
            assert_eq!(When::from(a).get(), Some(a));
            for b in times {
                assert_eq!(When::from(a).cmp(&When::from(b)), a.cmp(&b), "{a:?} {b:?}");
            }
            assert!(When::NEVER < When::from(a));
        }
        assert_eq!(When::from(None).get(), None);
        assert_eq!(When::default(), When::NEVER);
        assert_eq!(std::mem::size_of::<When>(), 8);
    }
}
