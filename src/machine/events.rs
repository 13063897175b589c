//! What the machine reports: the events it asks the driver to log, the
//! reasons it drops datagrams, the counters it keeps, and what a missing
//! peer lacks, each with the sentence a user reads.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::wire::DecodeError;

/// Why a datagram was not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    Malformed(DecodeError),
    /// Sent by a peer with another hosts list.
    HostsMismatch,
    /// Its MAC is missing or wrong: another secret, or forged.
    Unauthentic(DecodeError),
    /// Addressed to another entry id.
    NotForUs,
    /// Claims an entry id that is not a peer.
    UnknownSender,
    /// Claims a peer whose name does not resolve (yet).
    Unresolved,
    /// Claims a peer but comes from another address.
    WrongAddress,
    /// From an earlier incarnation of its sender.
    Stale,
    /// A heartbeat or acknowledgement older than one already heard from
    /// the same incarnation: a duplicate or a replay.
    Replay,
    /// An acknowledgement of something we never sent.
    BogusAck,
}

impl Drop {
    /// Each reason's slot in [`Stats::dropped`].
    pub const COUNT: usize = 10;

    pub(super) fn index(self) -> usize {
        match self {
            Drop::Malformed(_) => 0,
            Drop::HostsMismatch => 1,
            Drop::Unauthentic(_) => 2,
            Drop::NotForUs => 3,
            Drop::UnknownSender => 4,
            Drop::Unresolved => 5,
            Drop::WrongAddress => 6,
            Drop::Stale => 7,
            Drop::Replay => 8,
            Drop::BogusAck => 9,
        }
    }

    /// Short names of the slots in [`Stats::dropped`], in order.
    pub const NAMES: [&'static str; Drop::COUNT] = [
        "malformed",
        "other hosts list",
        "failed authentication",
        "addressed to another peer",
        "unknown sender",
        "unresolved sender",
        "wrong source address",
        "earlier incarnation",
        "duplicate or replay",
        "bogus acknowledgement",
    ];
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drop::Malformed(e) => write!(f, "malformed: {e}"),
            Drop::Unauthentic(e) => write!(f, "failed authentication: {e}"),
            other => f.write_str(Drop::NAMES[other.index()]),
        }
    }
}

/// Counters the node keeps, for the log and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub heartbeats: u64,
    /// Of the heartbeats: the steady ones of the interval rounds, to peers
    /// we have exchanged with (not asking).
    pub steady: u64,
    /// Of the heartbeats: questions asked again, unanswered...
    pub retries: u64,
    /// ...of which to peers not heard within the silence threshold (most
    /// of them not started yet).
    pub retries_unheard: u64,
    pub acks: u64,
    /// Probe requests and replies (indirect probes).
    pub probes: u64,
    pub received: u64,
    pub dropped: [u64; Drop::COUNT],
}

impl std::ops::AddAssign for Stats {
    /// Adds another node's counts: a cluster's, in the simulators.
    fn add_assign(&mut self, other: Stats) {
        self.heartbeats += other.heartbeats;
        self.steady += other.steady;
        self.retries += other.retries;
        self.retries_unheard += other.retries_unheard;
        self.acks += other.acks;
        self.probes += other.probes;
        self.received += other.received;
        for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
            *a += b;
        }
    }
}

impl Stats {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Why a peer's datagrams can never be believed, whatever the network
/// does: its configuration differs from ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    HostsList,
    /// Its datagrams fail authentication, for this reason.
    Secret(DecodeError),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::HostsList => f.write_str("runs with a different hosts list"),
            Mismatch::Secret(DecodeError::Unauthenticated) => {
                f.write_str("sends datagrams without a MAC (is it started without --secret-file?)")
            }
            Mismatch::Secret(DecodeError::NoSecret) => {
                f.write_str("sends datagrams with a MAC, and this peer has no --secret-file")
            }
            Mismatch::Secret(e) => write!(f, "fails authentication ({e}: another secret?)"),
        }
    }
}

/// Where the lookup of a peer's name stands, while it has no address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    NotTried,
    /// A lookup has been under way for this long.
    UnderWay(Duration),
    /// The last lookup failed; another follows.
    Failed(String),
}

/// What a peer we are still waiting for lacks, for the timeout report and
/// the progress lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub peer: String,
    /// Its position in the hosts file, from 1.
    pub index: u16,
    pub addr: Option<SocketAddr>,
    /// Set while `addr` is `None`.
    pub lookup: Option<Lookup>,
    pub heartbeat: bool,
    pub ack: bool,
    pub last_heard: Option<Duration>,
    /// Exchanged, but not heard within the silence threshold.
    pub silent: bool,
    /// It said it was leaving.
    pub left: bool,
    /// With `--barrier`: its READY has not been heard.
    pub not_ready: bool,
    pub mismatch: Option<Mismatch>,
    /// Datagrams claiming to be from it came from this address, which is
    /// not one of its own.
    pub wrong_source: Option<SocketAddr>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(addr) = self.addr else {
            write!(f, "{}", self.peer)?;
            return match &self.lookup {
                Some(Lookup::UnderWay(t)) => write!(
                    f,
                    ": address not resolved (lookup under way for {})",
                    pretty(*t)
                ),
                Some(Lookup::Failed(e)) => write!(f, ": address not resolved ({e})"),
                _ => f.write_str(": address not resolved (not tried yet)"),
            };
        };
        write!(f, "{}", Named(&self.peer, addr))?;
        f.write_str(":")?;
        if let Some(m) = self.mismatch {
            write!(f, " {m},")?;
        }
        if let Some(src) = self.wrong_source {
            write!(
                f,
                " its datagrams came from {src}, which is not its address (a host with several addresses? --bind its listed one),"
            )?;
        }
        if !self.heartbeat {
            f.write_str(" no heartbeat received,")?;
        }
        if !self.ack {
            f.write_str(" no acknowledgement received,")?;
        }
        if self.left {
            f.write_str(" left,")?;
        } else if self.silent {
            f.write_str(" exchanged, then fell silent,")?;
        }
        if self.not_ready {
            f.write_str(" not READY yet,")?;
        }
        match self.last_heard {
            Some(ago) => write!(f, " last heard {} ago", pretty(ago)),
            None => f.write_str(" never heard"),
        }
    }
}

/// A peer as events name it: its entry as written, its position in the
/// hosts file (1-based), where it is and which incarnation of it is meant.
/// Shown as its entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRef {
    pub name: String,
    pub index: u16,
    pub addr: Option<SocketAddr>,
    pub incarnation: Option<u64>,
}

impl fmt::Display for PeerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Something worth logging. The driver chooses the level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A name resolved for the first time, or to a new address.
    Resolved {
        peer: String,
        addr: SocketAddr,
        previous: Option<SocketAddr>,
    },
    /// A name did not resolve; it is tried again in `retry`.
    ResolveFailed {
        peer: String,
        error: String,
        retry: Duration,
        first: bool,
    },
    /// The exchange with `peer` is complete; `have` of `total` peers
    /// (this one included) are.
    Exchanged {
        peer: PeerRef,
        have: usize,
        total: usize,
    },
    /// READY, with what it took.
    Ready { after: Duration, stats: Stats },
    /// A peer came back with a new incarnation.
    Restarted { peer: PeerRef },
    /// A peer has not been heard for `silent`, nor answered the probes
    /// since, directly or through other peers: it may be down.
    Suspect { peer: PeerRef, silent: Duration },
    /// A peer has not been heard for `silent` (the silence threshold): it
    /// is taken for down.
    Down { peer: PeerRef, silent: Duration },
    /// A peer suspected, down or gone is heard again.
    Up { peer: PeerRef },
    /// A peer said it is leaving (it was stopped, or its command ended).
    Left { peer: PeerRef },
    /// Every peer is READY; with `--barrier` the node now lingers.
    AllReady { linger: Duration },
    /// A datagram was not believed.
    Dropped { reason: Drop, from: SocketAddr },
    /// Datagrams are being dropped: rate-limited.
    Dropping {
        reason: Drop,
        from: SocketAddr,
        total: u64,
    },
    /// A peer runs with another hosts list or secret: said once per peer.
    Mismatch {
        peer: String,
        from: SocketAddr,
        what: Mismatch,
    },
    /// The timeout ran out before READY (or, with `--barrier`, before the
    /// barrier passed): who is missing what.
    TimedOut {
        after: Duration,
        total: usize,
        barrier: bool,
        missing: Vec<Missing>,
        /// A peer that told us the barrier passed without this process.
        passed_without_us: Option<String>,
    },
    /// Who is missing what so far (`more` others not named), or with none
    /// missing, that nobody is.
    Progress {
        after: Duration,
        total: usize,
        barrier: bool,
        missing: Vec<Missing>,
        more: usize,
    },
    /// A peer passed the barrier (it knows every peer READY) while this
    /// process is not READY: an earlier process of this entry was.
    PassedWithoutUs { peer: String },
    /// Our own datagram to entry `other` came back to us: `ours` and
    /// `other` are one process.
    ListedTwice {
        ours: String,
        our_line: usize,
        other: String,
        other_line: usize,
    },
    /// Two other entries resolve to one address: only one of them can be
    /// heard.
    SameAddress {
        addr: SocketAddr,
        first: String,
        first_line: usize,
        second: String,
        second_line: usize,
    },
    /// A peer knows an incarnation of this entry newer than ours (our
    /// clock is behind the previous process's): we take a newer one.
    Reincarnated {
        peer: String,
        known: u64,
        incarnation: u64,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Resolved {
                peer,
                addr,
                previous: None,
            } => write!(f, "{peer} resolves to {addr}"),
            Event::Resolved {
                peer,
                addr,
                previous: Some(old),
            } => write!(f, "{peer} moved from {old} to {addr}"),
            Event::ResolveFailed {
                peer, error, retry, ..
            } => write!(
                f,
                "cannot resolve {peer} yet ({error}); retrying in {}",
                pretty(*retry)
            ),
            Event::Exchanged { peer, have, total } => {
                write!(f, "exchanged with {peer} ({have}/{total})")
            }
            Event::Ready { after, stats } => {
                write!(
                    f,
                    "READY after {}: sent {} ({}, {}{}), received {}",
                    pretty(*after),
                    Count(stats.heartbeats + stats.acks + stats.probes, "datagram"),
                    Count(stats.heartbeats, "heartbeat"),
                    Count(stats.acks, "acknowledgement"),
                    Probes(stats.probes),
                    stats.received
                )?;
                if stats.steady + stats.retries > 0 {
                    write!(
                        f,
                        "; of the heartbeats, {} steady at the interval, {} asked again ({} of peers not heard)",
                        stats.steady, stats.retries, stats.retries_unheard
                    )?;
                }
                Ok(())
            }
            Event::Restarted { peer } => {
                write!(f, "{peer} restarted (new incarnation): exchanging again")
            }
            Event::Suspect { peer, silent } => write!(
                f,
                "{peer} suspect: not heard for {}, probing it directly and through other peers",
                pretty(*silent)
            ),
            Event::Down { peer, silent } => {
                write!(f, "{peer} down: silent for {}", pretty(*silent))
            }
            Event::Up { peer } => write!(f, "{peer} up: heard again"),
            Event::Left { peer } => write!(f, "{peer} left"),
            Event::AllReady { linger } => write!(
                f,
                "every peer is READY: leaving once all confirm (at most {})",
                pretty(*linger)
            ),
            Event::Dropped { reason, from } => {
                write!(f, "dropped a datagram from {from}: {reason}")
            }
            Event::Dropping {
                reason,
                from,
                total,
            } => write!(
                f,
                "dropping datagrams ({total} so far); latest from {from}: {reason}"
            ),
            Event::Mismatch { peer, from, what } => {
                let same = match what {
                    Mismatch::HostsList => "read the same hosts file",
                    Mismatch::Secret(_) => "use the same --secret-file",
                };
                write!(f, "{} {what}: every peer must {same}", Named(peer, *from))
            }
            Event::TimedOut {
                after,
                total,
                barrier,
                missing,
                passed_without_us,
            } => {
                let what = if *barrier {
                    "the barrier passed"
                } else {
                    "READY"
                };
                write!(
                    f,
                    "timed out after {} before {what}: {} of {} peers missing",
                    pretty(*after),
                    missing.len(),
                    total
                )?;
                for m in missing {
                    write!(f, "\nmissing {m}")?;
                }
                if let Some(peer) = passed_without_us {
                    write!(
                        f,
                        "\nthe barrier passed without this process: {peer} said every peer was READY before this process was"
                    )?;
                }
                Ok(())
            }
            Event::ListedTwice {
                ours,
                our_line,
                other,
                other_line,
            } => write!(
                f,
                "{ours} (line {our_line}) and {other} (line {other_line}) are the same peer: this process received its own heartbeat sent to {other}; list each peer once"
            ),
            Event::SameAddress {
                addr,
                first,
                first_line,
                second,
                second_line,
            } => write!(
                f,
                "{first} (line {first_line}) and {second} (line {second_line}) both resolve to {addr}: only one of them can be heard there"
            ),
            Event::Progress {
                after,
                total,
                missing,
                more,
                ..
            } if missing.is_empty() && *more == 0 => write!(
                f,
                "after {}: READY, {} exchanged",
                pretty(*after),
                Count(*total as u64, "peer")
            ),
            Event::Progress {
                after,
                total,
                barrier,
                missing,
                more,
            } => {
                let what = if *barrier {
                    "the barrier to pass"
                } else {
                    "READY"
                };
                write!(
                    f,
                    "waiting for {what} after {}: {} of {total} peers missing",
                    pretty(*after),
                    missing.len() + more,
                )?;
                for m in missing {
                    write!(f, "\nmissing {m}")?;
                }
                if *more > 0 {
                    write!(f, "\nand {more} more")?;
                }
                Ok(())
            }
            Event::PassedWithoutUs { peer } => write!(
                f,
                "{peer} has passed the barrier without this process (an earlier process of this entry was READY)"
            ),
            Event::Reincarnated {
                peer,
                known,
                incarnation,
            } => write!(
                f,
                "{peer} knows incarnation {known:x} of this entry, newer than ours (clock behind?): now incarnation {incarnation:x}"
            ),
        }
    }
}

/// Durations in messages, in humantime's spelling: to the millisecond
/// from 10 ms, to the tenth of one below, to the microsecond below 1 ms.
pub fn pretty(d: Duration) -> humantime::FormattedDuration {
    let rounded = if d >= Duration::from_millis(10) {
        Duration::from_millis(d.as_millis() as u64)
    } else if d >= Duration::from_millis(1) {
        Duration::from_micros((d.as_micros() as u64 / 100) * 100)
    } else {
        Duration::from_micros(d.as_micros() as u64)
    };
    humantime::format_duration(rounded)
}

/// `n` things, in the singular for one.
struct Count(u64, &'static str);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.0 == 1 { "" } else { "s" };
        write!(f, "{} {}{s}", self.0, self.1)
    }
}

/// `, N probes` when there were any.
struct Probes(u64);

impl fmt::Display for Probes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, ", {}", Count(n, "probe")),
        }
    }
}

/// A peer's entry and the address it is at, the address only where the
/// entry does not already say it.
struct Named<'a>(&'a str, SocketAddr);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == self.1.to_string() {
            f.write_str(self.0)
        } else {
            write!(f, "{} ({})", self.0, self.1)
        }
    }
}
