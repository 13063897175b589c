//! When to ask a peer again: the round-trip estimate, the retransmission
//! rules and the node-wide pacing of retransmissions.
//!
//! A heartbeat that asks for an answer is retried until one comes. How
//! soon depends on what the peer's silence means:
//!
//! - A peer heard within the silence threshold is up: what is lost on the way
//!   to it or back is lost at random, so the retry comes after a timeout
//!   derived from the measured round trip (RFC 6298's `srtt + 4·rttvar`,
//!   floored at [`MIN_RTO`]), doubling at most [`MAX_DOUBLINGS_WHILE_HEARD`]
//!   times for [`FAST_RETRIES`] retries; only a peer that stays silent
//!   through all of them is backed off further, up to the interval. One
//!   heard again meanwhile, after our question could have reached it and
//!   without the answer, was not silent: its backoff starts again from
//!   the last quick retry.
//! - A peer not heard from has most likely not started: retries back off
//!   from [`Params::initial_rto`] to the interval. Its own start heartbeats
//!   everyone, and that is what makes READY instant, not our retries. In
//!   the node's first [`YOUTH`] intervals, though, they double at most
//!   [`MAX_DOUBLINGS_WHILE_YOUNG`] times: peers started around it may have
//!   lost its start heartbeat as it lost theirs, and under loss a pair
//!   that both sides back off to the interval is what the last READY
//!   waits for.
//! - A peer never heard from, while the peers it hears have answered its
//!   questions [`CLEAN_ANSWERS`] times since the last was lost ([`Loss`]),
//!   has not started: on a network that loses
//!   nothing its start heartbeat would have arrived. It is asked once an
//!   interval; a newcomer's own questions, retried on the quick schedule
//!   until it has that evidence of its own, cover a start heartbeat lost
//!   all the same. The first retry to it waits while peers are still
//!   starting (until no start heartbeat has come for a first retry's wait,
//!   [`Params::initial_rto`] jittered, and at most until three quarters of
//!   an interval after our question): it is then most likely among those
//!   to come, and no one is READY before the last has.
//!
//! Every retry, whatever its peer, spends a token of the node's [`Pacer`],
//! so that retransmissions to many peers at once cannot exceed what
//! receivers absorb: [`RETRANSMIT_RATE`] a second, or
//! [`RETRANSMIT_RATE_PER_PEER`] per peer when that is more. First
//! heartbeats and answers are never paced: they are what makes READY take
//! one round trip.

use std::time::{Duration, Instant};

use super::Params;

/// The least retransmission timeout to a peer that answers: well above a
/// loopback or LAN round trip and a busy receiver's scheduling delay.
pub(super) const MIN_RTO: Duration = Duration::from_millis(5);
/// The retransmission timeout before any round trip has been measured.
pub(super) const UNMEASURED_RTO: Duration = Duration::from_millis(20);
/// While a peer answers, its retransmission timeout doubles at most this
/// many times: its losses are random, not a sign that it is gone.
pub(super) const MAX_DOUBLINGS_WHILE_HEARD: u32 = 2;
/// In its first [`YOUTH`] intervals a node is among peers starting around
/// it, and a peer it never heard may be one whose first datagrams and ours
/// were all lost: its retries to such a peer double at most this many
/// times, as long as they are not answered, rather than all the way to the
/// interval.
pub(super) const MAX_DOUBLINGS_WHILE_YOUNG: u32 = 2;
/// How many intervals after its start a node is young: what a launch of
/// peers around it takes, with room for their retries under loss. A peer
/// still never heard after that has most likely not started.
pub(super) const YOUTH: u32 = 2;
/// Retries on the round trip before a peer's silence counts against it:
/// at 30% loss each way, eight lost round trips in a row happen once in
/// two hundred.
pub(super) const FAST_RETRIES: u32 = 8;
/// Retries on the round trip to a peer heard within the interval, which
/// is up: at 20% loss each way, 24 lost round trips in a row happen once
/// in 4·10¹⁰, so that among the 10⁸ pairs of 10 000 nodes none is backed
/// off for bad luck; a peer that hears nothing of ours (a one-way link)
/// is still backed off after them.
pub(super) const FAST_RETRIES_WHILE_HEARD: u32 = 24;
/// Retransmissions per second a node may send, all peers together, and
/// how many it may send at once: one receiver's share stays well inside
/// the socket buffer it sizes for its peers.
pub(super) const RETRANSMIT_RATE: u32 = 1000;
pub(super) const RETRANSMIT_BURST: u32 = 100;
/// Above [`RETRANSMIT_RATE`], a node may retransmit this many times a
/// second per peer: a receiver sizes its buffer for its peers (4 KiB, a
/// few datagrams, each), so what it absorbs grows with them. With every
/// node at this rate, a receiver gets two retries a second from each
/// sender on average. A fixed rate would make a launch of thousands wait
/// on it: at 2 000 nodes, a node's first retries alone took 1.4 s.
pub(super) const RETRANSMIT_RATE_PER_PEER: u32 = 2;

/// The retransmissions per second of a node with `peers` other peers.
pub(super) fn retransmit_rate(peers: usize) -> u32 {
    let peers = u32::try_from(peers).unwrap_or(u32::MAX);
    RETRANSMIT_RATE.max(RETRANSMIT_RATE_PER_PEER.saturating_mul(peers))
}

/// Answers from peers that are up since the last loss, after which a node
/// takes its network for one that loses nothing. Under random loss of `p`
/// each way, a given run of 16 round trips all get through with
/// probability `(1-p)^32`: one in five at 5%, one in 1 300 at 20%. Every
/// loss doubles the run needed, so that a network seen to lose is not
/// taken for one that does not on a lucky streak.
///
/// A loss is a retry that was answered: the question before it, or its
/// answer, was lost. A retry whose earlier question is answered after all
/// was only impatient (a busy peer), and says nothing: on two cores
/// starting 256 peers, nine in ten first retries are.
pub(super) const CLEAN_ANSWERS: u32 = 16;

/// What a node's own questions say about loss on its network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Loss {
    /// Answers since the last loss.
    clean: u32,
    /// How many it takes.
    needed: u32,
    /// When the run reached that.
    since: Option<Instant>,
}

impl Default for Loss {
    fn default() -> Loss {
        Loss {
            clean: 0,
            needed: CLEAN_ANSWERS,
            since: None,
        }
    }
}

impl Loss {
    /// A question was answered.
    pub(super) fn answered(&mut self, now: Instant) {
        self.clean = self.clean.saturating_add(1);
        if self.clean == self.needed {
            self.since = Some(now);
        }
    }

    /// How many answers in a row it takes now.
    #[cfg(test)]
    pub(super) fn needed(&self) -> u32 {
        self.needed
    }

    /// A question to a peer that is up was lost: its retry was answered.
    pub(super) fn lost(&mut self) {
        self.clean = 0;
        self.needed = self.needed.saturating_mul(2);
        self.since = None;
    }

    /// Nothing lost lately: enough answers in a row, the run complete at
    /// least `settle` ago, by when a question asked before it completed
    /// and lost would have been asked again and that answered. A burst of
    /// questions brings its answers in well before its losses are known.
    pub(super) fn none_seen(&self, settle: Duration, now: Instant) -> bool {
        self.since
            .is_some_and(|t| now.saturating_duration_since(t) >= settle)
    }
}

/// A smoothed round-trip time and its variation (RFC 6298), in
/// nanoseconds: a node keeps one for every peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rtt {
    /// [`UNMEASURED`] until the first sample.
    srtt: u64,
    var: u64,
}

/// No sample yet.
const UNMEASURED: u64 = u64::MAX;

impl Default for Rtt {
    fn default() -> Rtt {
        Rtt {
            srtt: UNMEASURED,
            var: 0,
        }
    }
}

impl Rtt {
    pub(super) fn sample(&mut self, r: Duration) {
        // Below the marker for no sample: 584 years.
        let r = u64::try_from(r.as_nanos())
            .unwrap_or(u64::MAX)
            .min(UNMEASURED - 1);
        if self.srtt == UNMEASURED {
            self.srtt = r;
            self.var = r / 2;
        } else {
            let s = self.srtt;
            let diff = s.abs_diff(r);
            self.var = ((u128::from(self.var) * 3 + u128::from(diff)) / 4) as u64;
            self.srtt = ((u128::from(s) * 7 + u128::from(r)) / 8) as u64;
        }
    }

    /// The smoothed round trip, once measured.
    pub(super) fn srtt(&self) -> Option<Duration> {
        (self.srtt != UNMEASURED).then(|| Duration::from_nanos(self.srtt))
    }

    /// `srtt + 4·rttvar`, once measured.
    pub(super) fn timeout(&self) -> Option<Duration> {
        self.srtt()
            .map(|s| s.saturating_add(Duration::from_nanos(self.var).saturating_mul(4)))
    }
}

/// Whether a peer was heard lately, for [`retry_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Heard {
    /// Not within the silence threshold: it has not started, or is gone.
    No,
    /// Within the silence threshold, not within the interval.
    Lately,
    /// Within the interval: it is up, and heartbeats us at least that
    /// often.
    Recently,
}

/// How long to wait for the answer to the `tries`-th asking heartbeat in a
/// row (1 for the first) to a peer: `heard` says when it was heard last,
/// `rtt` is its measured timeout (or the node's), `young` whether we
/// started less than [`YOUTH`] intervals ago.
pub(super) fn retry_after(
    params: &Params,
    heard: Heard,
    young: bool,
    rtt: Option<Duration>,
    tries: u32,
) -> Duration {
    let interval = params.interval;
    let doublings = tries.saturating_sub(1);
    let (base, doublings) = if heard != Heard::No {
        let fast = doublings.min(MAX_DOUBLINGS_WHILE_HEARD);
        // Heard within the interval, it is up: an unanswered question or
        // its answer was lost at random (among millions of pairs, eight in
        // a row are lost somewhere), and it gets three times the fast
        // retries. A peer silent for longer than its heartbeats are apart
        // is backed off after the usual ones.
        let slow = match heard {
            Heard::Recently => doublings.saturating_sub(FAST_RETRIES_WHILE_HEARD),
            _ => doublings.saturating_sub(FAST_RETRIES),
        };
        (answer_timeout(params, rtt), fast + slow)
    } else if young {
        (
            params.initial_rto(),
            doublings.min(MAX_DOUBLINGS_WHILE_YOUNG),
        )
    } else {
        (params.initial_rto(), doublings)
    };
    base.saturating_mul(1 << doublings.min(16)).min(interval)
}

/// How long an answer from a peer that is up may take: its measured
/// timeout, within [`MIN_RTO`] and the interval.
pub(super) fn answer_timeout(params: &Params, rtt: Option<Duration>) -> Duration {
    let interval = params.interval;
    rtt.unwrap_or(UNMEASURED_RTO)
        .clamp(MIN_RTO.min(interval), interval)
}

/// Before any round trip is measured, a question sent this long ago may
/// still be crossing the peer's: short, since a question that crossed
/// costs a datagram if asked again, and one that was lost (sent before the
/// peer started) costs a retry's wait if not.
pub(super) const UNMEASURED_CROSSING: Duration = Duration::from_millis(1);

/// How long after we asked a peer its own question may have crossed ours
/// on the way: two round trips, or [`UNMEASURED_CROSSING`].
pub(super) fn crossing_window(params: &Params, srtt: Option<Duration>) -> Duration {
    srtt.map_or(UNMEASURED_CROSSING, |s| {
        (s * 2).clamp(Duration::from_micros(100), params.interval)
    })
}

const NANO: u128 = 1_000_000_000;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Clone, Debug)]
pub(super) struct Pacer {
    rate: u32,
    burst: u32,
    /// Tokens, in billionths: a token a second earns one per nanosecond,
    /// so that no elapsed time is lost to rounding.
    nano_tokens: u128,
    last: Option<Instant>,
}

impl Pacer {
    pub(super) fn new(rate: u32, burst: u32) -> Pacer {
        Pacer {
            rate: rate.max(1),
            burst: burst.max(1),
            nano_tokens: u128::from(burst.max(1)) * NANO,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let last = *self.last.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last);
        let earned = elapsed.as_nanos().saturating_mul(u128::from(self.rate));
        let cap = u128::from(self.burst) * NANO;
        self.nano_tokens = self.nano_tokens.saturating_add(earned).min(cap);
        if now > last {
            self.last = Some(now);
        }
    }

    /// Takes a token if there is one.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.nano_tokens >= NANO {
            self.nano_tokens -= NANO;
            true
        } else {
            false
        }
    }

    /// Whole tokens there are at `now`.
    pub(super) fn tokens(&mut self, now: Instant) -> usize {
        self.refill(now);
        usize::try_from(self.nano_tokens / NANO).unwrap_or(usize::MAX)
    }

    /// When the next token will be there, counting from the last
    /// [`Pacer::take`] or [`Pacer::tokens`] (none before the first): at
    /// once while there is one.
    pub(super) fn next_token(&self) -> Option<Instant> {
        let missing = NANO.saturating_sub(self.nano_tokens);
        let nanos = missing.div_ceil(u128::from(self.rate));
        Some(self.last? + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(interval_ms: u64) -> Params {
        Params {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_secs(60),
            barrier: false,
            authenticated: false,
            job: None,
        }
    }

    #[test]
    fn rtt_follows_rfc_6298() {
        let mut r = Rtt::default();
        assert_eq!(r.timeout(), None);
        r.sample(Duration::from_millis(8));
        // First sample: srtt = r, rttvar = r/2: 8 + 4·4.
        assert_eq!(r.timeout(), Some(Duration::from_millis(24)));
        r.sample(Duration::from_millis(8));
        // rttvar = 3/4·4 + 1/4·0 = 3; srtt = 8.
        assert_eq!(r.timeout(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn a_peer_that_answers_is_retried_on_the_round_trip_with_a_small_cap() {
        let p = params(2000);
        let rtt = Some(Duration::from_millis(8));
        let waits: Vec<_> = (1..=12)
            .map(|k| retry_after(&p, Heard::Lately, false, rtt, k))
            .collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            waits,
            [
                ms(8),
                ms(16),
                ms(32),
                ms(32),
                ms(32),
                ms(32),
                ms(32),
                ms(32),
                // Silent through the fast retries: backed off again.
                ms(32),
                ms(64),
                ms(128),
                ms(256)
            ]
        );
        // Heard within the interval, it is up: three times the fast
        // retries before backing off (a peer that hears nothing of ours
        // still is).
        let recent: Vec<_> = (1..=28)
            .map(|k| retry_after(&p, Heard::Recently, false, rtt, k))
            .collect();
        assert_eq!(recent[..3], [ms(8), ms(16), ms(32)]);
        assert!(recent[3..25].iter().all(|&w| w == ms(32)), "{recent:?}");
        assert_eq!(recent[25..], [ms(64), ms(128), ms(256)]);
        // Unmeasured: a LAN-sized guess; floored at MIN_RTO when measured tiny.
        assert_eq!(
            retry_after(&p, Heard::Lately, false, None, 1),
            UNMEASURED_RTO
        );
        assert_eq!(
            retry_after(&p, Heard::Lately, false, Some(Duration::from_micros(50)), 1),
            MIN_RTO
        );
        // Never above the interval.
        assert_eq!(
            retry_after(&params(10), Heard::Lately, false, Some(ms(500)), 1),
            ms(10)
        );
    }

    #[test]
    fn a_peer_never_heard_is_backed_off_to_the_interval() {
        let p = params(2000);
        let ms = |n| Duration::from_millis(n);
        let waits: Vec<_> = (1..=7)
            .map(|k| retry_after(&p, Heard::No, false, Some(ms(1)), k))
            .collect();
        assert_eq!(
            waits,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(2000),
                ms(2000)
            ]
        );
        assert_eq!(retry_after(&p, Heard::No, false, None, u32::MAX), ms(2000));
    }

    #[test]
    fn a_young_node_asks_a_peer_never_heard_at_most_four_first_waits_apart() {
        let p = params(2000);
        let ms = |n| Duration::from_millis(n);
        let waits: Vec<_> = (1..=6)
            .map(|k| retry_after(&p, Heard::No, true, None, k))
            .collect();
        assert_eq!(
            waits,
            [ms(100), ms(200), ms(400), ms(400), ms(400), ms(400)]
        );
        // Never above the interval.
        assert_eq!(retry_after(&params(2), Heard::No, true, None, 9), ms(2));
    }

    #[test]
    fn sixteen_answers_in_a_row_settled_say_nothing_is_lost_and_each_loss_doubles_the_run() {
        let t0 = Instant::now();
        let settle = Duration::from_millis(10);
        let later = t0 + settle;
        let mut loss = Loss::default();
        let run = |loss: &mut Loss, n: u32| {
            for _ in 0..n {
                loss.answered(t0);
            }
        };
        run(&mut loss, 15);
        assert!(!loss.none_seen(settle, later));
        run(&mut loss, 1);
        assert!(loss.none_seen(settle, later));
        // Not before the losses among the run's questions would be known.
        assert!(!loss.none_seen(settle, later - Duration::from_nanos(1)));
        // One loss: the count starts over, and twice as many answers are
        // needed.
        loss.lost();
        assert!(!loss.none_seen(settle, later));
        run(&mut loss, 31);
        assert!(!loss.none_seen(settle, later));
        run(&mut loss, 1);
        assert!(loss.none_seen(settle, later));
        loss.lost();
        loss.lost();
        run(&mut loss, 127);
        assert!(!loss.none_seen(settle, later));
        run(&mut loss, 1);
        assert!(loss.none_seen(settle, later));
    }

    #[test]
    fn the_pacer_spends_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(1000, 3);
        assert_eq!(pacer.next_token(), None);
        assert_eq!(pacer.tokens(t0), 3);
        assert!((0..3).all(|_| pacer.take(t0)));
        assert!(!pacer.take(t0));
        assert_eq!(pacer.tokens(t0), 0);
        let next = pacer.next_token().unwrap();
        assert_eq!(next - t0, Duration::from_millis(1));
        assert!(!pacer.take(t0 + Duration::from_micros(999)));
        assert_eq!(pacer.next_token(), Some(next));
        assert!(pacer.take(next));
        // A long pause saves up no more than the burst.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(pacer.tokens(later), 3);
        assert!((0..3).all(|_| pacer.take(later)));
        assert!(!pacer.take(later));
        // Over one second from empty: at most rate + 1 tokens.
        let mut n = 0;
        for us in (0..=1_000_000).step_by(100) {
            if pacer.take(later + Duration::from_micros(us)) {
                n += 1;
            }
        }
        assert!((1000..=1001).contains(&n), "{n} tokens in one second");
    }
}
