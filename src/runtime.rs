//! The event loop: the only place with I/O.
//!
//! One mio `Poll` watches four sources: the UDP sockets (one per address
//! family), a `Waker` that the resolver threads ring when a name has
//! resolved, and a signalfd that delivers the signals (SIGCHLD among them,
//! when the command run after READY ends). Each turn turns what arrived
//! into [`Input`]s for the machine, feeds it the clock when its deadline
//! has passed, and performs the [`Action`]s it answers with. No protocol
//! decision is made here: if a line of this file decides something about
//! peers, it belongs in [`crate::machine`].

use std::fs;
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use log::{Level, debug, error, info, log, warn};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::cli::ReadyTo;
use crate::io_reason;
use crate::job::{self, Job};
use crate::machine::{Action, Event, Input, JobEnd, Node, Reason, Stop};
use crate::signals::{Caught, Signals};
use crate::sockets::{self, Sockets};
use crate::wire::{self, Key, Kind, Message};

/// The IPv4 and IPv6 sockets are `Token(V4)` and `Token(V6)`.
const V4: usize = 0;
const V6: usize = 1;
const RESOLVER: Token = Token(2);
const SIGNALS: Token = Token(3);

/// Datagrams read per turn before the loop looks at its timers again, so
/// that a flooded socket cannot starve the heartbeat schedule.
const READ_BATCH: usize = 256;
/// Larger than any datagram we accept: longer ones are read truncated and
/// fail to decode on their length.
const RECV_BUFFER: usize = 2048;
/// Clusters up to this size log each completed exchange at the default
/// level.
const EXCHANGED_LINES_UP_TO: usize = 8;
/// getaddrinfo blocks, so lookups run on threads: at most this many at a
/// time, however many names do not resolve.
const RESOLVERS: usize = 8;
/// A resolver thread's stack: ample for getaddrinfo.
const RESOLVER_STACK: usize = 256 * 1024;

/// How READY is announced, and the key of the datagrams' MACs.
pub struct Options {
    pub ready_to: ReadyTo,
    pub ready_file: Option<PathBuf>,
    pub key: Option<Key>,
    /// The command to run after READY, when the machine says so.
    pub job: Option<job::Spec>,
    /// stdout carries JSON events instead of `READY`.
    pub json: bool,
}

type Resolution = (u16, Result<Vec<SocketAddr>, String>);
type Lookup = (u16, String, u16);

/// Runs `node` on `sockets` until it exits; returns why.
pub fn run(
    node: &mut Node,
    sockets: Sockets,
    mut signals: Signals,
    options: Options,
) -> io::Result<Reason> {
    let mut poll = Poll::new()?;
    let mut socks = [sockets.v4, sockets.v6].map(|s| s.map(UdpSocket::from_std));
    for (i, s) in socks.iter_mut().enumerate() {
        if let Some(s) = s {
            poll.registry().register(s, Token(i), Interest::READABLE)?;
        }
    }
    let waker = Arc::new(Waker::new(poll.registry(), RESOLVER)?);
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let (resolved_tx, resolved_rx) = mpsc::channel();
    let (lookup_tx, lookup_rx) = mpsc::channel();

    let job = options.job.clone().map(Job::new);
    let mut io = Io {
        sockets: socks,
        waker,
        resolved_tx,
        lookup_tx,
        lookup_rx: Arc::new(Mutex::new(lookup_rx)),
        resolvers: 0,
        options,
        job,
        job_end: None,
        group_got: None,
        ready_file_made: false,
        send_failures: 0,
        actions: Vec::new(),
        exit: None,
    };
    let mut events = Events::with_capacity(16);
    let mut buf = [0u8; RECV_BUFFER];
    // Edge-triggered: true until a read has seen WouldBlock.
    let mut readable = [false; 2];

    io.feed(node, Input::Start)?;
    loop {
        if let Some(reason) = io.exit {
            return Ok(reason);
        }
        let timeout = if readable.contains(&true) {
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
                Token(i @ (V4 | V6)) => readable[i] = true,
                SIGNALS => {
                    for Caught { signal, by_kernel } in signals.pending()? {
                        io.note_group_signal(signal, by_kernel);
                        let input = match u8::try_from(signal) {
                            _ if signal == libc::SIGUSR1 => Input::Report,
                            _ if signal == libc::SIGCHLD => {
                                io.reap(node)?;
                                continue;
                            }
                            Ok(n) => Input::Stop(Stop(n)),
                            Err(_) => continue,
                        };
                        io.feed(node, input)?;
                    }
                }
                _ => {}
            }
        }
        for (i, more) in readable.iter_mut().enumerate() {
            if *more {
                *more = io.read_batch(node, i, &mut buf)?;
            }
        }
        io.take_resolutions(node, &resolved_rx)?;
        if node.next_deadline().is_some_and(|d| d <= Instant::now()) {
            io.feed(node, Input::Tick)?;
        }
    }
}

/// The loop's hands: everything the machine's actions touch.
struct Io {
    /// Indexed by [`V4`] and [`V6`].
    sockets: [Option<UdpSocket>; 2],
    waker: Arc<Waker>,
    resolved_tx: Sender<Resolution>,
    /// Lookups waiting for a resolver thread, and the threads' end of it.
    lookup_tx: Sender<Lookup>,
    lookup_rx: Arc<Mutex<Receiver<Lookup>>>,
    /// Resolver threads started so far, at most [`RESOLVERS`].
    resolvers: usize,
    options: Options,
    /// The command run after READY, if there is one.
    job: Option<Job>,
    /// How the command ended, learnt while performing an action (it could
    /// not be started): the machine's next input.
    job_end: Option<JobEnd>,
    /// The terminal sent this signal to our process group, the command
    /// included: it is not passed on again.
    group_got: Option<u8>,
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
    /// Hands one input to the machine and performs what it answers, then
    /// what performing it brought about (a command that could not start).
    fn feed(&mut self, node: &mut Node, input: Input) -> io::Result<()> {
        let mut next = Some(input);
        while let Some(input) = next.take() {
            if self.exit.is_some() {
                return Ok(());
            }
            let mut actions = std::mem::take(&mut self.actions);
            node.transition(input, Instant::now(), &mut actions);
            for action in actions.drain(..) {
                self.perform(action)?;
            }
            self.actions = actions;
            next = self.job_end.take().map(Input::JobEnded);
        }
        Ok(())
    }

    /// SIGCHLD: the command may have ended. Reaped if so, and its end told.
    fn reap(&mut self, node: &mut Node) -> io::Result<()> {
        let Some(job) = &mut self.job else {
            return Ok(());
        };
        let pid = job.pid();
        match job.reap()? {
            Some(end) => {
                debug!("the command (pid {}) ended: {end}", pid.unwrap_or(0));
                self.feed(node, Input::JobEnded(end))
            }
            None => Ok(()),
        }
    }

    /// Reads up to [`READ_BATCH`] datagrams; true if more may be waiting.
    fn read_batch(&mut self, node: &mut Node, family: usize, buf: &mut [u8]) -> io::Result<bool> {
        for _ in 0..READ_BATCH {
            let Some(socket) = &self.sockets[family] else {
                return Ok(false);
            };
            match sockets::recv(socket, buf) {
                Ok((n, from, arrived)) => {
                    let message = wire::decode(&buf[..n], self.options.key.as_ref());
                    if let Ok(m) = &message {
                        debug!("<- {from} {}", describe(m));
                    }
                    let input = Input::Datagram {
                        from,
                        message,
                        arrived,
                    };
                    self.feed(node, input)?;
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
            Action::Event(event) => {
                log_event(&event);
                if self.options.json
                    && let Some(object) = crate::output::event(&event, SystemTime::now())
                {
                    print_json(&object);
                }
            }
            Action::Exit(reason) => self.exit = Some(reason),
            Action::StartJob => self.start_job(),
            Action::SignalJob(signal) => self.signal_job(signal),
        }
        Ok(())
    }

    /// Starts the command. One that cannot start has ended: the machine
    /// hears so next.
    fn start_job(&mut self) {
        let Some(job) = &mut self.job else {
            warn!("asked to start a command, and there is none");
            return;
        };
        match job.start() {
            Ok(pid) => info!("started {} (pid {pid})", job.describe()),
            Err(e) => {
                error!("{e}");
                self.job_end = Some(e.end());
            }
        }
    }

    /// A signal the kernel sent (not a `kill`): from a terminal, SIGINT,
    /// SIGQUIT and SIGHUP go to its whole foreground process group. If the
    /// command shares ours, it has that signal already, and passing it on
    /// would deliver it twice.
    fn note_group_signal(&mut self, signal: libc::c_int, by_kernel: bool) {
        let from_terminal =
            [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP].contains(&signal) && by_kernel;
        let shared = self.job.as_ref().is_some_and(Job::shares_our_group);
        self.group_got = (from_terminal && shared)
            .then(|| u8::try_from(signal).ok())
            .flatten();
    }

    fn signal_job(&mut self, signal: u8) {
        let name = Stop(signal).name();
        if self.group_got.take() == Some(signal) {
            info!("{name} came from the terminal to the command as well: not sent again");
            return;
        }
        match self.job.as_mut().map(|job| job.signal(signal)) {
            Some(Ok(Some(pid))) => info!("sent {name} to the command (pid {pid})"),
            Some(Ok(None)) | None => debug!("{name} not sent: the command does not run"),
            Some(Err(e)) => warn!("cannot send {name} to the command: {}", io_reason(&e)),
        }
    }

    /// Sends on the socket of `to`'s family; an IPv4 peer is reached
    /// through a dual-stack IPv6 socket (`--bind ::`) when there is no
    /// IPv4 socket.
    fn send(&mut self, to: SocketAddr, message: &Message) {
        debug!("-> {to} {}", describe(message));
        let (socket, target) = match (to, &self.sockets) {
            (SocketAddr::V4(_), [Some(v4), _]) => (v4, to),
            (SocketAddr::V4(v4), [None, Some(v6)]) => (
                v6,
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
            ),
            (SocketAddr::V6(_), [_, Some(v6)]) => (v6, to),
            _ => {
                return self.send_failed(to, "no socket of its address family".into());
            }
        };
        let bytes = wire::encode(message, self.options.key.as_ref());
        if let Err(e) = socket.send_to(bytes.as_bytes(), target) {
            self.send_failed(to, e.to_string());
        }
    }

    /// A lost datagram, as far as the protocol is concerned: it
    /// retransmits. Only the first failure is worth a warning.
    fn send_failed(&mut self, to: SocketAddr, why: String) {
        self.send_failures += 1;
        let level = if self.send_failures == 1 {
            Level::Warn
        } else {
            Level::Debug
        };
        log!(level, "cannot send to {to}: {why}");
    }

    /// Which families of address our sockets reach: IPv4 through an IPv4
    /// socket or a dual-stack IPv6 one.
    fn reaches(&self) -> [bool; 2] {
        let dual_stack = self.sockets[V6]
            .as_ref()
            .is_some_and(|s| socket2::SockRef::from(s).only_v6().is_ok_and(|only| !only));
        [
            self.sockets[V4].is_some() || dual_stack,
            self.sockets[V6].is_some(),
        ]
    }

    /// Queues a lookup for the resolver threads, starting one more while
    /// there are fewer than [`RESOLVERS`].
    fn resolve(&mut self, peer: u16, host: String, port: u16) {
        let _ = self.lookup_tx.send((peer, host, port));
        if self.resolvers >= RESOLVERS {
            return;
        }
        let jobs = Arc::clone(&self.lookup_rx);
        let tx = self.resolved_tx.clone();
        let waker = Arc::clone(&self.waker);
        let reaches = self.reaches();
        let spawned = thread::Builder::new()
            .name("resolver".into())
            .stack_size(RESOLVER_STACK)
            .spawn(move || {
                loop {
                    // The lock is held only to take one job.
                    let job = jobs.lock().map(|rx| rx.recv());
                    let Ok(Ok((peer, host, port))) = job else {
                        return;
                    };
                    let result = lookup(&host, port, reaches);
                    // The loop may have exited: then nobody is listening.
                    if tx.send((peer, result)).is_err() {
                        return;
                    }
                    let _ = waker.wake();
                }
            });
        match spawned {
            Ok(_) => self.resolvers += 1,
            Err(e) if self.resolvers == 0 => {
                let _ = self
                    .resolved_tx
                    .send((peer, Err(format!("cannot start a resolver thread: {e}"))));
                let _ = self.waker.wake();
            }
            // The threads already running will take the lookup.
            Err(_) => {}
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
        if self.options.json {
            // The `ready` event is the announcement.
            return;
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

/// getaddrinfo, through the standard library. Only addresses of a family
/// we have a socket for are of use.
fn lookup(host: &str, port: u16, reaches: [bool; 2]) -> Result<Vec<SocketAddr>, String> {
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs
                .filter(|a| match a {
                    SocketAddr::V4(_) => reaches[V4],
                    SocketAddr::V6(_) => reaches[V6],
                })
                .collect();
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
        Kind::Leave => "leave",
        Kind::ProbeRequest => "probe-request",
        Kind::ProbeReply => "probe-reply",
    };
    let ack = match m.ack() {
        Some((incarnation, seq)) => format!(" acks #{seq} of {incarnation:x}"),
        None if m.kind == Kind::Stale => format!(" answers #{} knowing {:x}", m.acked, m.echo),
        None if m.kind == Kind::ProbeRequest => format!(" for peer {}", m.echo),
        None if m.kind == Kind::ProbeReply => format!(" peer {} answered #{}", m.echo, m.acked),
        None => String::new(),
    };
    format!(
        "{kind} #{} from {} to {} incarnation {:x}{ack} ask={} ready={} done={} barrier={}",
        m.seq, m.from, m.to, m.incarnation, m.ask, m.flags.ready, m.flags.done, m.flags.barrier
    )
}

fn log_event(event: &Event) {
    let level = match event {
        Event::ResolveFailed { first: false, .. } | Event::Dropped { .. } => Level::Debug,
        // One line per pair would be thousands for a large cluster: above
        // a handful of peers the progress reports summarise instead.
        Event::Exchanged { total, .. } if *total > EXCHANGED_LINES_UP_TO => Level::Debug,
        Event::Down { .. }
        | Event::Dropping { .. }
        | Event::Mismatch { .. }
        | Event::SameAddress { .. }
        | Event::PassedWithoutUs { .. } => Level::Warn,
        Event::TimedOut { .. } | Event::ListedTwice { .. } => Level::Error,
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

/// Writes one JSON object as a line on stdout. A closed stdout stops
/// nothing: the run goes on as it would.
pub fn print_json(object: &serde_json::Value) {
    let mut out = io::stdout().lock();
    let written = writeln!(out, "{object}").and_then(|_| out.flush());
    if let Err(e) = written {
        debug!("cannot write to stdout: {e}");
    }
}
