//! Who is missing what: the report said every [`PROGRESS_EVERY`] while not
//! READY (or not through the barrier), on SIGUSR1, and at the timeout.

use std::time::Instant;

use super::detector::Liveness;
use super::peer::Resolution;
use super::{Action, Event, Lookup, Missing, Node, PROGRESS_EVERY, State};

/// A progress report names at most this many missing peers; the timeout
/// report names them all.
const PROGRESS_NAMES: usize = 8;

impl Node {
    /// Says who is missing what, in the words of the timeout report, and
    /// when to say it next: never again once READY (with `--barrier`, once
    /// through it), unless `asked`.
    pub(super) fn progress(&mut self, asked: bool, now: Instant, out: &mut Vec<Action>) {
        let waiting = match self.state {
            State::Discovering | State::Exchanging => Some(false),
            State::Ready { .. } if self.params.barrier => Some(true),
            State::Ready { .. } | State::Draining { .. } => None,
        };
        let after = now.saturating_duration_since(self.started.unwrap_or(now));
        let Some(barrier) = waiting else {
            self.next_progress = None;
            if !asked {
                return;
            }
            out.push(Action::Event(Event::Progress {
                after,
                total: self.total,
                barrier: false,
                missing: Vec::new(),
                more: 0,
            }));
            return;
        };
        self.next_progress = Some(now + PROGRESS_EVERY);
        let mut missing = self.missing(barrier, now);
        let more = missing.len().saturating_sub(PROGRESS_NAMES);
        missing.truncate(PROGRESS_NAMES);
        out.push(Action::Event(Event::Progress {
            after,
            total: self.total,
            barrier,
            missing,
            more,
        }));
    }

    /// Every peer that keeps us from READY, or with `barrier`, from
    /// passing the barrier, and what it lacks.
    pub(super) fn missing(&self, barrier: bool, now: Instant) -> Vec<Missing> {
        let silent_after = self.params.silent_after();
        self.peers
            .iter()
            .filter_map(|p| {
                // Once READY, what a barrier waits for is the peers' READY:
                // one that left READY is not missing, however long ago.
                let stands = barrier && p.liveness == Liveness::Left && !p.absent();
                let silent = !(p.heard_within(silent_after, now) || stands);
                let not_ready = barrier && !p.flags.ready;
                if p.exchanged() && !silent && !not_ready {
                    return None;
                }
                let lookup = match p.resolution.as_deref() {
                    Some(Resolution {
                        started: Some(t), ..
                    }) => Lookup::UnderWay(now.saturating_duration_since(*t)),
                    Some(Resolution { error: Some(e), .. }) => Lookup::Failed(e.clone()),
                    _ => Lookup::NotTried,
                };
                Some(Missing {
                    peer: p.listed.name.clone(),
                    index: p.id,
                    addr: p.target(),
                    lookup: p.target().is_none().then_some(lookup),
                    heartbeat: p.heartbeat,
                    ack: p.ack,
                    last_heard: p.last_heard.get().map(|t| now.saturating_duration_since(t)),
                    silent: p.exchanged() && silent,
                    left: p.liveness == Liveness::Left,
                    not_ready,
                    mismatch: p.rare.as_ref().and_then(|r| r.mismatch),
                    wrong_source: p.rare.as_ref().and_then(|r| r.wrong_source),
                })
            })
            .collect()
    }
}
