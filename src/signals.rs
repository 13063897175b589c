//! The signals rollcall catches: every one whose default action would end
//! it (so that the ready file never outlives it), SIGUSR1 (a progress
//! report) and SIGCHLD (the command has ended).
//!
//! They are blocked and read from a signalfd that the event loop's poll
//! watches, each with whether the kernel sent it (a terminal, to its whole
//! foreground process group) or a process did.

use std::io::{self, ErrorKind};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Token};

/// The signals rollcall catches, read from a signalfd that the poll
/// watches. They are blocked, so none ever meets its default action: in
/// every thread, since the threads started after [`catch`] inherit the
/// mask, and until the loop reads them, however early they come. That
/// takes three system calls, where a handler per signal took a
/// `sigaction` each and, with `signal-hook`, a copy of its registry of
/// handlers each: a fifth of a start's CPU (README, Performance). The
/// command starts with none blocked ([`crate::job`]).
///
/// The loop's thread reads the signals sent to the process and its own,
/// not those sent to another thread of ours: such a one stays pending
/// there. The one the kernel would send is SIGXFSZ to the log's thread,
/// writing to a file past `RLIMIT_FSIZE`: its write then fails (`EFBIG`),
/// which the log ignores as it does any error, and the peer goes on.
pub struct Signals(OwnedFd);

/// A signal read from [`Signals`].
pub struct Caught {
    pub signal: libc::c_int,
    /// Sent by the kernel, not by a process (`kill`, `sigqueue`): from a
    /// terminal, to its whole foreground process group.
    pub by_kernel: bool,
}

impl Signals {
    fn new(signals: &[libc::c_int]) -> io::Result<Signals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; sigaddset,
        // pthread_sigmask and signalfd read an initialised set; sigaction
        // reads a zeroed struct whose handler is SIG_DFL.
        unsafe {
            if libc::sigemptyset(set.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            for &signal in signals {
                if libc::sigaddset(set.as_mut_ptr(), signal) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            // Blocked, a signal is never discarded as ignored, whatever
            // rollcall inherited (`nohup`, a script's `&`). But an ignored
            // SIGCHLD has the kernel reap the command itself, its status
            // lost to us: take the default action, which keeps it.
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            if libc::sigaction(libc::SIGCHLD, &default, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, set.as_ptr(), libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a new descriptor, ours alone.
            Ok(Signals(OwnedFd::from_raw_fd(fd)))
        }
    }

    /// The signals caught since the last call: all of them, as the poll
    /// reports the descriptor's readiness by edge.
    pub fn pending(&mut self) -> io::Result<Vec<Caught>> {
        const INFO: usize = std::mem::size_of::<libc::signalfd_siginfo>();
        let mut caught = Vec::new();
        loop {
            let mut infos = [MaybeUninit::<libc::signalfd_siginfo>::uninit(); 8];
            // SAFETY: reads at most the buffer's size into it.
            let n = unsafe {
                libc::read(
                    self.0.as_raw_fd(),
                    infos.as_mut_ptr().cast(),
                    std::mem::size_of_val(&infos),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    ErrorKind::WouldBlock => return Ok(caught),
                    ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            // A signalfd reads whole records only.
            let read = n as usize / INFO;
            for info in &infos[..read] {
                // SAFETY: the kernel wrote the first `read` records.
                let info = unsafe { info.assume_init_ref() };
                caught.push(Caught {
                    signal: info.ssi_signo as libc::c_int,
                    by_kernel: info.ssi_code == libc::SI_KERNEL,
                });
            }
            if read < infos.len() {
                return Ok(caught);
            }
        }
    }
}

impl mio::event::Source for Signals {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).deregister(registry)
    }
}

/// Every signal whose default action ends the process and that can be
/// caught: the classic ones and the real-time ones. (SIGKILL and SIGSTOP
/// cannot be; SIGILL, SIGFPE, SIGSEGV and SIGBUS are faults of the process
/// itself; SIGABRT is how a panic ends it.)
fn terminating() -> Vec<libc::c_int> {
    let classic = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTRAP,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGTERM,
        libc::SIGSTKFLT,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGSYS,
    ];
    classic
        .into_iter()
        .chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
        .collect()
}

/// Catches every terminating signal from now on, for [`crate::runtime::run`]: call it
/// first thing, before any thread starts, so that a signal is never met
/// by the default action, which would leave the ready file behind. SIGUSR1 asks for a progress report
/// and ends nothing. SIGCHLD says that the command may have ended: caught
/// before the command can start, so that its end is never missed.
pub fn catch() -> io::Result<Signals> {
    Signals::new(&caught())
}

/// Every signal [`catch`] catches.
pub fn caught() -> Vec<libc::c_int> {
    let mut signals = terminating();
    signals.push(libc::SIGUSR1);
    signals.push(libc::SIGCHLD);
    signals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Stop;

    #[test]
    fn every_terminating_signal_is_caught_and_named() {
        let caught = terminating();
        for signal in [libc::SIGHUP, libc::SIGTERM, libc::SIGPWR, libc::SIGRTMIN()] {
            assert!(caught.contains(&signal), "{signal}");
        }
        for signal in [libc::SIGUSR1, libc::SIGKILL, libc::SIGSEGV, libc::SIGCHLD] {
            assert!(!caught.contains(&signal), "{signal}");
        }
        let names = [
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGQUIT, "SIGQUIT"),
            (libc::SIGUSR2, "SIGUSR2"),
            (libc::SIGALRM, "SIGALRM"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGXCPU, "SIGXCPU"),
            (libc::SIGVTALRM, "SIGVTALRM"),
            (libc::SIGPROF, "SIGPROF"),
            (libc::SIGIO, "SIGIO"),
            (libc::SIGPWR, "SIGPWR"),
        ];
        for (signal, name) in names {
            assert_eq!(Stop(signal as u8).name(), name);
        }
        // Catching is no use if the loop cannot read them.
        assert!(catch().is_ok());
    }
}
