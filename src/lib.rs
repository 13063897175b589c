//! rollcall: a serverless start-up barrier over UDP.
//!
//! Peers listed in a hosts file heartbeat each other and acknowledge what
//! they hear; once a peer has exchanged both ways with every other peer it
//! announces `READY`. See "How it works" in the README for the map:
//!
//! - [`cli`]: flags and environment into a [`cli::Config`];
//! - [`hosts`]: the hosts file, pure;
//! - [`wire`]: the datagram format, pure and total;
//! - [`machine`]: the protocol as a pure state machine;
//! - [`runtime`]: the mio event loop, the only place with I/O;
//! - [`job`]: the command run after READY, its signals and its end, for
//!   the runtime;
//! - [`signals`]: the signals it catches, read from a signalfd;
//! - [`sockets`]: the UDP sockets it runs on, one per address family;
//! - [`logging`]: log lines to stderr off the loop, never blocking it;
//! - [`output`]: `--output json`, the events as JSON Lines on stdout.

pub mod cli;
pub mod hosts;
pub mod job;
pub mod logging;
pub mod machine;
pub mod output;
pub mod runtime;
pub mod signals;
pub mod sockets;
pub mod wire;

/// `text` in single quotes for a message, with whatever a terminal would
/// not show (a byte-order mark, control characters, zero-width spaces)
/// escaped, so that the user sees what is wrong with it.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' || c == '"' || c == '\\' {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    out.push('\'');
    out
}

/// An I/O error's reason without the "(os error N)" tail, in lower case.
pub fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

/// The process's exit status: part of the interface, documented in the
/// README and `--help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// READY was reached: the timeout ran out after READY, or the barrier
    /// completed.
    Ready,
    /// A runtime failure, such as the socket failing.
    Failure,
    /// A usage or configuration error.
    Usage,
    /// The timeout ran out before READY.
    Timeout,
    /// Stopped by this signal: 128 + its number, as shells report it.
    Signal(u8),
    /// The command run after READY ended with this status (128 + the
    /// signal that ended it; 127 or 126 if it could not be started).
    Job(u8),
    /// With `--exit-on-down`: a peer went down while the command ran.
    PeerDown,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ready => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Timeout => 124,
            Exit::Signal(n) => 128u8.saturating_add(n),
            Exit::Job(code) => code,
            Exit::PeerDown => 3,
        }
    }
}
