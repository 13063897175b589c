//! Why a node exits, with the exit status each reason gives, and the stop
//! requests (signals) that make it leave.

use std::fmt;
use std::time::Duration;

use super::{JobEnd, pretty};
use crate::Exit;

/// Why a node exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The timeout ran out after READY.
    TimeoutAfterReady(Duration),
    /// The timeout ran out before READY.
    TimeoutBeforeReady(Duration),
    /// With `--barrier`: the timeout ran out after READY, before every
    /// peer's READY was heard.
    TimeoutBeforeBarrier(Duration),
    /// Every peer is READY and has said so.
    BarrierComplete,
    /// Every peer is READY; not every peer confirmed within the linger.
    BarrierLingered,
    /// A signal.
    Stopped(Stop),
    /// This process received its own datagram addressed to another entry:
    /// the hosts file lists it twice.
    ListedTwice,
    /// The command run after READY ended.
    JobEnded(JobEnd),
    /// With `--exit-on-down`: a peer went down while the command ran, and
    /// the command was stopped; it ended so.
    PeerDown(JobEnd),
}

impl Reason {
    pub fn exit(self) -> Exit {
        match self {
            Reason::TimeoutAfterReady(_) | Reason::BarrierComplete | Reason::BarrierLingered => {
                Exit::Ready
            }
            Reason::TimeoutBeforeReady(_) | Reason::TimeoutBeforeBarrier(_) => Exit::Timeout,
            Reason::Stopped(stop) => Exit::Signal(stop.0),
            Reason::ListedTwice => Exit::Usage,
            Reason::JobEnded(end) => Exit::Job(end.code()),
            Reason::PeerDown(_) => Exit::PeerDown,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::TimeoutAfterReady(t) => write!(f, "timeout of {} reached", pretty(*t)),
            Reason::TimeoutBeforeReady(t) => {
                write!(f, "timed out after {} before READY", pretty(*t))
            }
            Reason::TimeoutBeforeBarrier(t) => {
                write!(
                    f,
                    "timed out after {} before the barrier passed",
                    pretty(*t)
                )
            }
            Reason::BarrierComplete => write!(f, "barrier complete: every peer is READY"),
            Reason::BarrierLingered => {
                write!(f, "barrier passed: every peer is READY (linger over)")
            }
            Reason::Stopped(stop) => write!(f, "stopped by {}", stop.name()),
            Reason::ListedTwice => f.write_str("this process is listed twice in the hosts file"),
            Reason::JobEnded(end) => write!(f, "{end}"),
            Reason::PeerDown(end) => {
                write!(
                    f,
                    "a peer went down while the command ran (--exit-on-down); {end}"
                )
            }
        }
    }
}

/// A stop request from outside: a signal, by its number, whose default
/// action would end the process, caught so that the process ends cleanly
/// (the ready file removed) with 128 + the number, as shells report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stop(pub u8);

impl Stop {
    pub const INTERRUPT: Stop = Stop(2);
    pub const TERMINATE: Stop = Stop(15);

    /// Its name, for Linux's numbers (x86, Arm and most others; 32 and
    /// above are real-time signals).
    pub fn name(self) -> String {
        const NAMES: [&str; 31] = [
            "SIGHUP",
            "SIGINT",
            "SIGQUIT",
            "SIGILL",
            "SIGTRAP",
            "SIGABRT",
            "SIGBUS",
            "SIGFPE",
            "SIGKILL",
            "SIGUSR1",
            "SIGSEGV",
            "SIGUSR2",
            "SIGPIPE",
            "SIGALRM",
            "SIGTERM",
            "SIGSTKFLT",
            "SIGCHLD",
            "SIGCONT",
            "SIGSTOP",
            "SIGTSTP",
            "SIGTTIN",
            "SIGTTOU",
            "SIGURG",
            "SIGXCPU",
            "SIGXFSZ",
            "SIGVTALRM",
            "SIGPROF",
            "SIGWINCH",
            "SIGIO",
            "SIGPWR",
            "SIGSYS",
        ];
        match usize::from(self.0)
            .checked_sub(1)
            .and_then(|i| NAMES.get(i))
        {
            Some(name) => (*name).into(),
            None => format!("signal {}", self.0),
        }
    }
}
