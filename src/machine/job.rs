//! The command that runs after READY (`rollcall -- COMMAND`): when the
//! node asks the driver to start it and to signal it, and how its end ends
//! the node. The driver only performs: it starts the process, delivers the
//! signals it is told to, and reports the exit as [`Input::JobEnded`](super::Input::JobEnded).
//!
//! - Without `--barrier` the command starts at READY; with it, once every
//!   peer is READY (the barrier has passed).
//! - From its start the timeout no longer applies: the node serves the
//!   protocol for as long as the command runs, and exits with its status.
//! - A stop signal (SIGTERM, SIGINT, ...) is passed on to it, the node
//!   leaves the cluster, and exits when the command has.
//! - With `--exit-on-down`, a peer reported down while it runs stops it:
//!   SIGTERM, then SIGKILL after [`KILL_GRACE`].
//! - So does finding, while it runs, that this process is listed twice in
//!   the hosts file: the node leaves, and exits 2 once the command has.

use std::fmt;
use std::time::{Duration, Instant};

use super::{Action, Node, Reason, Stop};

/// How long a command stopped because a peer went down has between SIGTERM
/// and SIGKILL: `docker stop`'s default.
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// The node runs a command after READY.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobParams {
    /// Stop the command, and exit, when a peer goes down while it runs.
    pub exit_on_down: bool,
}

/// How the command ended, as the driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEnd {
    /// It exited with this status.
    Exited(u8),
    /// This signal ended it.
    Killed(u8),
    /// It could not be started: 127 when it was not found, 126 when it was
    /// found but could not be executed, as shells say.
    NotStarted(u8),
}

impl JobEnd {
    /// The status rollcall exits with: the command's own, 128 + the signal
    /// that ended it, or 127 / 126.
    pub fn code(self) -> u8 {
        match self {
            JobEnd::Exited(code) | JobEnd::NotStarted(code) => code,
            JobEnd::Killed(signal) => 128u8.saturating_add(signal),
        }
    }
}

impl fmt::Display for JobEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobEnd::Exited(code) => write!(f, "the command exited with status {code}"),
            JobEnd::Killed(signal) => {
                write!(f, "the command was ended by {}", Stop(*signal).name())
            }
            JobEnd::NotStarted(code) => write!(f, "the command could not be started ({code})"),
        }
    }
}

/// Where the command stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Job {
    /// Not started (or there is none).
    Waiting,
    Running,
    /// Told to stop (SIGTERM) because a peer went down (`then` is
    /// `None`: [`Reason::PeerDown`]) or for `then`: SIGKILL at `kill_at`,
    /// unless it has exited by then (`None` once sent).
    Stopping {
        kill_at: Option<Instant>,
        then: Option<Reason>,
    },
    Ended,
}

impl Node {
    /// True once the command has started: the timeout no longer applies.
    pub(super) fn job_started(&self) -> bool {
        self.job != Job::Waiting
    }

    /// The command is being stopped for a reason of the node's own.
    pub(super) fn job_stopping_for_a_reason(&self) -> bool {
        matches!(self.job, Job::Stopping { then: Some(_), .. })
    }

    /// Starts the command, if there is one and it has not started.
    pub(super) fn start_job(&mut self, out: &mut Vec<Action>) {
        if self.params.job.is_some() && self.job == Job::Waiting {
            self.job = Job::Running;
            out.push(Action::StartJob);
        }
    }

    /// A stop signal: passed on to a command that runs, which the node then
    /// outlives. True if it was passed on (the node waits for the command).
    pub(super) fn stop_job(&mut self, stop: Stop, out: &mut Vec<Action>) -> bool {
        match self.job {
            Job::Running | Job::Stopping { .. } => {
                out.push(Action::SignalJob(stop.0));
                true
            }
            Job::Waiting | Job::Ended => false,
        }
    }

    /// A peer was reported down: with `--exit-on-down`, the command is
    /// told to stop.
    pub(super) fn peer_down_for_job(&mut self, now: Instant, out: &mut Vec<Action>) {
        let exit_on_down = self.params.job.is_some_and(|j| j.exit_on_down);
        if exit_on_down && self.job == Job::Running {
            self.terminate_job(None, now, out);
        }
    }

    /// The node must end for `reason` while the command runs: it is told
    /// to stop as under `--exit-on-down`, the node leaves the cluster, and
    /// exits for `reason` once the command has. False if no command runs
    /// (the node ends at once); true, and nothing done again, if it is
    /// already being stopped for a reason.
    pub(super) fn end_job_for(
        &mut self,
        reason: Reason,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> bool {
        match self.job {
            Job::Waiting | Job::Ended => false,
            Job::Stopping { then: Some(_), .. } => true,
            Job::Running | Job::Stopping { then: None, .. } => {
                self.terminate_job(Some(reason), now, out);
                self.start_leaving(now);
                true
            }
        }
    }

    /// SIGTERM now, SIGKILL after [`KILL_GRACE`]; then the node ends for
    /// `then`.
    fn terminate_job(&mut self, then: Option<Reason>, now: Instant, out: &mut Vec<Action>) {
        self.job = Job::Stopping {
            kill_at: Some(now + KILL_GRACE),
            then,
        };
        out.push(Action::SignalJob(Stop::TERMINATE.0));
    }

    /// The command's deadline: when it gets SIGKILL.
    pub(super) fn job_deadline(&self) -> Option<Instant> {
        match self.job {
            Job::Stopping { kill_at, .. } => kill_at,
            _ => None,
        }
    }

    /// Sends SIGKILL when the grace after SIGTERM is over.
    pub(super) fn job_timers(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Job::Stopping {
            kill_at: Some(t),
            then,
        } = self.job
            && now >= t
        {
            self.job = Job::Stopping {
                kill_at: None,
                then,
            };
            out.push(Action::SignalJob(9));
        }
    }

    /// The command ended: so does the node, with its status, with
    /// [`Reason::PeerDown`] if a peer going down stopped it, or for the
    /// reason it was stopped for.
    pub(super) fn job_ended(&mut self, end: JobEnd, now: Instant, out: &mut Vec<Action>) {
        let reason = match self.job {
            Job::Stopping { then: None, .. } => Reason::PeerDown(end),
            Job::Stopping { then: Some(r), .. } => r,
            _ => Reason::JobEnded(end),
        };
        self.job = Job::Ended;
        self.depart(reason, now, out);
    }
}
