//! The event loop: the only place with I/O.
//!
//! One mio `Poll` watches three sources: the UDP socket, a `Waker` that the
//! resolver threads ring when a name has resolved, and a pipe that delivers
//! SIGINT and SIGTERM. Each turn turns what arrived into [`Input`]s for the
//! machine, feeds it the clock when its deadline has passed, and performs
//! the [`Action`]s it answers with. No protocol decision is made here: if a
//! line of this file decides something about peers, it belongs in
//! [`crate::machine`].

use std::fs;
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use log::{Level, debug, error, info, log, warn};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
pub use signal_hook_mio::v1_0::Signals;

use crate::cli::ReadyTo;
use crate::machine::{Action, Event, Input, Node, Reason, Stop};
use crate::wire::{self, Key, Kind, Message};

const SOCKET: Token = Token(0);
const RESOLVER: Token = Token(1);
const SIGNALS: Token = Token(2);

/// Datagrams read per turn before the loop looks at its timers again, so
/// that a flooded socket cannot starve the heartbeat schedule.
const READ_BATCH: usize = 256;
/// Larger than any datagram we accept: longer ones are read truncated and
/// fail to decode on their length.
const RECV_BUFFER: usize = 2048;
/// getaddrinfo runs on a thread of its own per lookup; this is ample.
const RESOLVER_STACK: usize = 256 * 1024;

/// How READY is announced, and the key of the datagrams' MACs.
pub struct Options {
    pub ready_to: ReadyTo,
    pub ready_file: Option<PathBuf>,
    pub key: Option<Key>,
}

type Resolution = (u16, Result<Vec<SocketAddr>, String>);

/// Catches SIGINT and SIGTERM from now on, for [`run`]: call it first
/// thing, so that a signal is never met by the default action.
pub fn catch_signals() -> io::Result<Signals> {
    Signals::new([libc::SIGINT, libc::SIGTERM])
}

/// Runs `node` on `socket` until it exits; returns why.
pub fn run(
    node: &mut Node,
    socket: std::net::UdpSocket,
    mut signals: Signals,
    options: Options,
) -> io::Result<Reason> {
    socket.set_nonblocking(true)?;
    let mut socket = UdpSocket::from_std(socket);
    let dual_stack = socket.local_addr()?.is_ipv6();
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), RESOLVER)?);
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let (resolved_tx, resolved_rx) = mpsc::channel();
    if let Some(path) = &options.ready_file {
        // Left by a process that was killed: it speaks of an earlier run.
        match fs::remove_file(path) {
            Ok(()) => info!("removed a stale ready file {}", path.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => warn!("cannot remove stale ready file {}: {e}", path.display()),
        }
    }

    let mut io = Io {
        socket,
        dual_stack,
        waker,
        resolved_tx,
        options,
        ready_file_made: false,
        send_failures: 0,
        actions: Vec::new(),
        exit: None,
    };
    let mut events = Events::with_capacity(16);
    let mut buf = [0u8; RECV_BUFFER];
    // Edge-triggered: true until a read has seen WouldBlock.
    let mut readable = false;

    io.feed(node, Input::Start)?;
    loop {
        if let Some(reason) = io.exit {
            return Ok(reason);
        }
        let timeout = if readable {
            Some(Duration::ZERO)
        } else {
            node.next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            match event.token() {
                SOCKET => readable = true,
                SIGNALS => {
                    for signal in signals.pending() {
                        let stop = match signal {
                            libc::SIGINT => Stop::Interrupt,
                            _ => Stop::Terminate,
                        };
                        io.feed(node, Input::Stop(stop))?;
                    }
                }
                _ => {}
            }
        }
        if readable {
            readable = io.read_batch(node, &mut buf)?;
        }
        io.take_resolutions(node, &resolved_rx)?;
        if node.next_deadline().is_some_and(|d| d <= Instant::now()) {
            io.feed(node, Input::Tick)?;
        }
    }
}

/// The loop's hands: everything the machine's actions touch.
struct Io {
    socket: UdpSocket,
    dual_stack: bool,
    waker: Arc<Waker>,
    resolved_tx: Sender<Resolution>,
    options: Options,
    ready_file_made: bool,
    send_failures: u64,
    actions: Vec<Action>,
    exit: Option<Reason>,
}

impl Drop for Io {
    fn drop(&mut self) {
        if let (true, Some(path)) = (self.ready_file_made, &self.options.ready_file)
            && let Err(e) = fs::remove_file(path)
        {
            warn!("cannot remove ready file {}: {e}", path.display());
        }
    }
}

impl Io {
    /// Hands one input to the machine and performs what it answers.
    fn feed(&mut self, node: &mut Node, input: Input) -> io::Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        let mut actions = std::mem::take(&mut self.actions);
        node.transition(input, Instant::now(), &mut actions);
        for action in actions.drain(..) {
            self.perform(action)?;
        }
        self.actions = actions;
        Ok(())
    }

    /// Reads up to [`READ_BATCH`] datagrams; true if more may be waiting.
    fn read_batch(&mut self, node: &mut Node, buf: &mut [u8]) -> io::Result<bool> {
        for _ in 0..READ_BATCH {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => {
                    let message = wire::decode(&buf[..n], self.options.key.as_ref());
                    if let Ok(m) = &message {
                        debug!("<- {from} {}", describe(m));
                    }
                    self.feed(node, Input::Datagram { from, message })?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // An ICMP error for an earlier send: the peer is not up yet.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn take_resolutions(&mut self, node: &mut Node, rx: &Receiver<Resolution>) -> io::Result<()> {
        while let Ok((peer, result)) = rx.try_recv() {
            self.feed(node, Input::Resolved { peer, result })?;
        }
        Ok(())
    }

    fn perform(&mut self, action: Action) -> io::Result<()> {
        match action {
            Action::Send { to, message } => self.send(to, &message),
            Action::Resolve { peer, host, port } => self.resolve(peer, host, port),
            Action::Ready => self.ready(),
            Action::Event(event) => log_event(&event),
            Action::Exit(reason) => self.exit = Some(reason),
        }
        Ok(())
    }

    fn send(&mut self, to: SocketAddr, message: &Message) {
        debug!("-> {to} {}", describe(message));
        let target = match to {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            other => other,
        };
        if let Err(e) = self.socket.send_to(
            wire::encode(message, self.options.key.as_ref()).as_bytes(),
            target,
        ) {
            // A lost datagram, as far as the protocol is concerned: it
            // retransmits. Only the first failure is worth a warning.
            self.send_failures += 1;
            let level = if self.send_failures == 1 {
                Level::Warn
            } else {
                Level::Debug
            };
            log!(level, "cannot send to {to}: {e}");
        }
    }

    fn resolve(&mut self, peer: u16, host: String, port: u16) {
        let tx = self.resolved_tx.clone();
        let waker = Arc::clone(&self.waker);
        let dual_stack = self.dual_stack;
        let spawned = thread::Builder::new()
            .name(format!("resolve {host}"))
            .stack_size(RESOLVER_STACK)
            .spawn(move || {
                let result = lookup(&host, port, dual_stack);
                // The loop may have exited: then nobody is listening.
                if tx.send((peer, result)).is_ok() {
                    let _ = waker.wake();
                }
            });
        if let Err(e) = spawned {
            let _ = self
                .resolved_tx
                .send((peer, Err(format!("cannot start a resolver thread: {e}"))));
            let _ = self.waker.wake();
        }
    }

    /// The ready file first, then the line: whoever reads READY may rely
    /// on the file.
    fn ready(&mut self) {
        if let Some(path) = &self.options.ready_file {
            match fs::write(path, "READY\n") {
                Ok(()) => self.ready_file_made = true,
                Err(e) => error!("cannot create ready file {}: {e}", path.display()),
            }
        }
        let written = match self.options.ready_to {
            ReadyTo::Stdout => {
                writeln!(io::stdout().lock(), "READY").and_then(|_| io::stdout().flush())
            }
            ReadyTo::Stderr => writeln!(io::stderr().lock(), "READY"),
        };
        if let Err(e) = written {
            error!("cannot print READY: {e}");
        }
    }
}

/// getaddrinfo, through the standard library. IPv6 results are useless to
/// an IPv4-only socket.
fn lookup(host: &str, port: u16, dual_stack: bool) -> Result<Vec<SocketAddr>, String> {
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.filter(|a| dual_stack || a.is_ipv4()).collect();
            if addrs.is_empty() {
                Err("no usable address".into())
            } else {
                Ok(addrs)
            }
        }
        Err(e) => {
            let text = e.to_string();
            Err(text
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&text)
                .to_string())
        }
    }
}

fn describe(m: &Message) -> String {
    let kind = match m.kind {
        Kind::Heartbeat => "heartbeat",
        Kind::Ack => "ack",
        Kind::Stale => "stale",
    };
    format!(
        "{kind} #{} from {} to {} incarnation {:x} echo {:x} ready={} done={}",
        m.seq, m.from, m.to, m.incarnation, m.echo, m.flags.ready, m.flags.done
    )
}

fn log_event(event: &Event) {
    let level = match event {
        Event::ResolveFailed { first: false, .. } | Event::Dropped { .. } => Level::Debug,
        Event::Silent { .. } | Event::Dropping { .. } | Event::Mismatch { .. } => Level::Warn,
        Event::TimedOut { .. } => Level::Error,
        _ => Level::Info,
    };
    if log::log_enabled!(level) {
        for line in event.to_string().lines() {
            log!(level, "{line}");
        }
    }
}

/// Logs the end of a run: why, and what was dropped on the way.
pub fn log_exit(reason: &Reason, node: &Node) {
    let stats = node.stats();
    if stats.dropped_total() > 0 {
        let parts: Vec<String> = stats
            .dropped
            .iter()
            .zip(crate::machine::Drop::NAMES)
            .filter(|(n, _)| **n > 0)
            .map(|(n, name)| format!("{n} {name}"))
            .collect();
        info!(
            "dropped {} datagrams: {}",
            stats.dropped_total(),
            parts.join(", ")
        );
    }
    info!("exiting ({}): {reason}", reason.exit().code());
}
