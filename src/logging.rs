//! The log: lines on stderr that can never stall or stop the protocol.
//!
//! The event loop must keep its heartbeat schedule whatever happens to
//! stderr, so it never writes there itself. A log call (through `log` and
//! `fern`) renders the whole line into one buffer and hands it to a bounded
//! queue without waiting; a writer thread of its own writes each line to
//! file descriptor 2 with a single `write(2)`.
//!
//! - A reader that has gone (`EPIPE`), a closed descriptor (`EBADF`) or any
//!   other write error is ignored: the writer keeps draining the queue, and
//!   the protocol does not notice that nobody is listening.
//! - A reader that stalls blocks only the writer. Once [`CAPACITY`] lines
//!   wait, new lines are dropped and counted, and the writer, when it next
//!   gets through, says how many were lost at the place they were lost:
//!   `WARN  log: 12 lines dropped (stderr is not keeping up)`.
//! - One `write` per line keeps the lines of processes sharing one stderr
//!   (a compose log, a CI log file, `make cluster`) whole: a write of fewer
//!   than `PIPE_BUF` bytes to a pipe or to an `O_APPEND` file is atomic.
//!
//! The format: `{RFC 3339 time, milliseconds, UTC} {LEVEL:<5} {message}`. A
//! message of several lines gives one such line per line of text.
//!
//! [`flush`] waits, until a deadline, for the queue to be written: `main`
//! calls it before the process exits, so that the last lines are not lost
//! when stderr is healthy. Once the event loop has ended ([`closing`]),
//! nothing needs the log to be quick any more: the last lines, the exit
//! line among them, wait for room in a full queue until the exit's
//! deadline instead of being dropped, so that a stderr that stalled and
//! recovers as the peer exits still gets them.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use log::{Level, LevelFilter};

/// Lines waiting for the writer before new ones are dropped: enough for a
/// burst (a timeout report, a debug line per datagram for a while), small
/// enough to stay a few hundred kilobytes.
pub const CAPACITY: usize = 1024;

/// How long, at most, the exit waits for the last lines to be written.
pub const EXIT_WAIT: Duration = Duration::from_secs(1);

/// The process's queue, once [`init`] has run.
static QUEUE: OnceLock<Queue> = OnceLock::new();

/// Installs the logger at `level`, writing to stderr through a writer
/// thread. Fails if a logger is already installed or the thread cannot
/// start.
pub fn init(level: LevelFilter) -> Result<(), fern::InitError> {
    let queue = Queue::start(Stderr)?;
    let queue = QUEUE.get_or_init(|| queue);
    fern::Dispatch::new()
        .level(level)
        .chain(fern::Output::call(|record| {
            queue.push(record.level(), record.args())
        }))
        .apply()?;
    Ok(())
}

/// Waits until every line logged so far is written, or `deadline` passes;
/// true if written. Lines dropped at the end get their notice first.
/// Returns at once if [`init`] has not run.
pub fn flush(deadline: Instant) -> bool {
    QUEUE.get().is_none_or(|q| q.flush(deadline))
}

/// The event loop has ended: from now on a line finding the queue full
/// waits for room until [`EXIT_WAIT`] from now, the exit's deadline,
/// rather than being dropped.
pub fn closing() {
    if let Some(q) = QUEUE.get() {
        q.close(Instant::now() + EXIT_WAIT);
    }
}

/// [`flush`] until the exit's deadline: the one [`closing`] set, or
/// [`EXIT_WAIT`] from now.
pub fn flush_for_exit() -> bool {
    QUEUE.get().is_none_or(|q| {
        let deadline = q.closing.get().copied();
        q.flush(deadline.unwrap_or_else(|| Instant::now() + EXIT_WAIT))
    })
}

/// Renders a log line, or one line per line of a `message` of several,
/// each ending in a newline, onto `out`.
pub fn render(out: &mut String, time: SystemTime, level: Level, message: &dyn fmt::Display) {
    let start = out.len();
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{} {level:<5} ",
        humantime::format_rfc3339_millis(time)
    );
    let body = out.len();
    let _ = write!(out, "{message}");
    if !out[body..].contains('\n') {
        out.push('\n');
        return;
    }
    let text = out.split_off(body);
    let prefix = out.split_off(start);
    for line in text.lines() {
        out.push_str(&prefix);
        out.push_str(line);
        out.push('\n');
    }
}

/// What the queue carries: a rendered line (or lines), and how many lines
/// were dropped just before it, so that the notice lands at the gap.
struct Entry {
    dropped_before: u64,
    text: String,
}

/// Counters shared by the loggers and the writer.
#[derive(Default)]
struct Counts {
    /// Dropped since the last entry that got into the queue.
    pending: AtomicU64,
    /// Dropped in all.
    dropped: AtomicU64,
    /// Entries that got into the queue.
    queued: AtomicU64,
    /// Entries the writer is done with; `done` rings at each.
    written: Mutex<u64>,
    done: Condvar,
}

impl Counts {
    fn written(&self) -> MutexGuard<'_, u64> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The loggers' end of the queue. The writer thread ends when it is
/// dropped.
struct Queue {
    tx: SyncSender<Entry>,
    counts: Arc<Counts>,
    /// Set once the event loop has ended: until then no line waits.
    closing: OnceLock<Instant>,
}

impl Queue {
    /// Starts a writer thread that writes to `out`.
    fn start<W: Write + Send + 'static>(out: W) -> io::Result<Queue> {
        let (tx, rx) = sync_channel(CAPACITY);
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        thread::Builder::new()
            .name("log".into())
            .spawn(move || write_all_entries(rx, out, &shared))?;
        Ok(Queue {
            tx,
            counts,
            closing: OnceLock::new(),
        })
    }

    /// Renders and queues a line. A line that finds the queue full is
    /// dropped and counted, without waiting; once [`closing`], it waits
    /// for room until the exit's deadline first.
    fn push(&self, level: Level, message: &fmt::Arguments) {
        let mut text = String::with_capacity(128);
        render(&mut text, SystemTime::now(), level, message);
        self.send(text, self.closing.get().copied());
    }

    /// The event loop has ended: lines wait for room until `deadline`.
    fn close(&self, deadline: Instant) {
        let _ = self.closing.set(deadline);
    }

    /// Queues `text`, waiting for room until `wait_until` if given, or
    /// counts it as dropped; an empty `text` carries only the notice of
    /// the lines dropped before it. True if queued.
    fn send(&self, text: String, wait_until: Option<Instant>) -> bool {
        let c = &self.counts;
        let lost = u64::from(!text.is_empty());
        let mut entry = Entry {
            dropped_before: c.pending.swap(0, Ordering::Relaxed),
            text,
        };
        loop {
            // Read before trying: an entry written in between ends the
            // wait at once.
            let written = *c.written();
            match self.tx.try_send(entry) {
                Ok(()) => {
                    c.queued.fetch_add(1, Ordering::Release);
                    return true;
                }
                Err(TrySendError::Full(back))
                    if wait_until.is_some_and(|t| self.wait_written_past(written, t)) =>
                {
                    entry = back;
                }
                Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                    c.pending
                        .fetch_add(back.dropped_before + lost, Ordering::Relaxed);
                    c.dropped.fetch_add(lost, Ordering::Relaxed);
                    return false;
                }
            }
        }
    }

    fn flush(&self, deadline: Instant) -> bool {
        // Lines dropped at the end have no later line to carry their
        // notice: an empty one does, once the writer makes room for it.
        while self.counts.pending.load(Ordering::Relaxed) > 0 {
            let written = *self.counts.written();
            if self.send(String::new(), None) {
                break;
            }
            if !self.wait_written_past(written, deadline) {
                return false;
            }
        }
        self.wait_written(deadline)
    }

    /// Waits until the writer is done with every entry queued so far, or
    /// `deadline` passes; true if done.
    fn wait_written(&self, deadline: Instant) -> bool {
        let target = self.counts.queued.load(Ordering::Acquire);
        self.wait_until(deadline, |written| written >= target)
    }

    /// Waits until the writer is done with more than `written` entries.
    fn wait_written_past(&self, written: u64, deadline: Instant) -> bool {
        self.wait_until(deadline, |now| now > written)
    }

    fn wait_until(&self, deadline: Instant, done: impl Fn(u64) -> bool) -> bool {
        let mut written = self.counts.written();
        while !done(*written) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            written = self
                .counts
                .done
                .wait_timeout(written, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }
}

/// The writer thread: each line with one `write_all` (one `write(2)` unless
/// the kernel takes less), errors ignored, until the queue closes.
fn write_all_entries<W: Write>(rx: Receiver<Entry>, mut out: W, counts: &Counts) {
    let mut notice = String::new();
    for entry in rx {
        if entry.dropped_before > 0 {
            notice.clear();
            let n = entry.dropped_before;
            let lines = if n == 1 { "line" } else { "lines" };
            render(
                &mut notice,
                SystemTime::now(),
                Level::Warn,
                &format_args!("log: {n} {lines} dropped (stderr is not keeping up)"),
            );
            let _ = out.write_all(notice.as_bytes());
        }
        for line in entry.text.split_inclusive('\n') {
            let _ = out.write_all(line.as_bytes());
        }
        *counts.written() += 1;
        counts.done.notify_all();
    }
}

/// File descriptor 2, written with `write(2)` directly: no buffer and no
/// lock shared with other users of `std::io::stderr`, and a closed
/// descriptor is an error like any other.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: the pointer and length describe `buf`, valid for reads.
        let n = unsafe { libc::write(libc::STDERR_FILENO, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// Long enough for anything that should happen at once.
    const SOON: Duration = Duration::from_secs(10);

    fn rendered(level: Level, message: &str) -> String {
        let mut out = String::new();
        render(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(1_234),
            level,
            &message,
        );
        out
    }

    #[test]
    fn a_line_is_time_level_and_message() {
        assert_eq!(
            rendered(Level::Info, "hello"),
            "1970-01-01T00:00:01.234Z INFO  hello\n"
        );
        assert_eq!(
            rendered(Level::Warn, "w"),
            "1970-01-01T00:00:01.234Z WARN  w\n"
        );
        assert_eq!(
            rendered(Level::Error, "e"),
            "1970-01-01T00:00:01.234Z ERROR e\n"
        );
        assert_eq!(
            rendered(Level::Debug, ""),
            "1970-01-01T00:00:01.234Z DEBUG \n"
        );
    }

    #[test]
    fn each_line_of_a_message_gets_the_prefix() {
        let p = "1970-01-01T00:00:01.234Z ERROR ";
        assert_eq!(
            rendered(Level::Error, "timed out\nmissing a\nmissing b"),
            format!("{p}timed out\n{p}missing a\n{p}missing b\n")
        );
        assert_eq!(rendered(Level::Error, "one\n"), format!("{p}one\n"));
        assert_eq!(
            rendered(Level::Error, "a\n\nb"),
            format!("{p}a\n{p}\n{p}b\n")
        );
    }

    #[test]
    fn render_appends() {
        let mut out = String::from("before\n");
        render(&mut out, UNIX_EPOCH, Level::Info, &"x\ny");
        assert_eq!(
            out,
            "before\n1970-01-01T00:00:00.000Z INFO  x\n1970-01-01T00:00:00.000Z INFO  y\n"
        );
    }

    /// A writer that records each `write` call, can hold writes back (as a
    /// stalled pipe does) and can fail them all (as a closed one does).
    #[derive(Default)]
    struct Probe {
        state: Mutex<ProbeState>,
        changed: Condvar,
    }

    #[derive(Default)]
    struct ProbeState {
        held: bool,
        fail: bool,
        /// Writes waiting at the gate.
        waiting: usize,
        writes: Vec<String>,
    }

    impl Probe {
        fn lock(&self) -> MutexGuard<'_, ProbeState> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn set(&self, f: impl FnOnce(&mut ProbeState)) {
            f(&mut self.lock());
            self.changed.notify_all();
        }

        /// Waits until a write is held at the gate.
        fn wait_held_write(&self) {
            let until = Instant::now() + SOON;
            let mut s = self.lock();
            while s.waiting == 0 {
                let left = until.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "no write reached the gate");
                s = self.changed.wait_timeout(s, left).unwrap().0;
            }
        }

        fn writes(&self) -> Vec<String> {
            self.lock().writes.clone()
        }
    }

    struct ProbeWriter(Arc<Probe>);

    impl Write for ProbeWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let probe = &self.0;
            let until = Instant::now() + SOON;
            let mut s = probe.lock();
            s.waiting += 1;
            probe.changed.notify_all();
            while s.held {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                s = probe.changed.wait_timeout(s, left).unwrap().0;
            }
            s.waiting -= 1;
            if s.fail {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            s.writes.push(String::from_utf8(buf.to_vec()).unwrap());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn probed() -> (Queue, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let queue = Queue::start(ProbeWriter(Arc::clone(&probe))).unwrap();
        (queue, probe)
    }

    /// A queue whose writer holds "first" while CAPACITY more lines
    /// ("queued 0".."queued {CAPACITY-1}") wait: the next line finds it
    /// full.
    fn held_and_full() -> (Queue, Arc<Probe>) {
        let (q, probe) = probed();
        probe.set(|s| s.held = true);
        q.push(Level::Info, &format_args!("first"));
        probe.wait_held_write();
        for i in 0..CAPACITY {
            q.push(Level::Info, &format_args!("queued {i}"));
        }
        (q, probe)
    }

    /// The text of a written line after its prefix.
    fn message(line: &str) -> &str {
        const PREFIX: usize = "1970-01-01T00:00:01.234Z INFO  ".len();
        assert!(line.ends_with('\n'), "{line:?} does not end a line");
        &line[PREFIX..line.len() - 1]
    }

    #[test]
    fn each_line_is_one_write() {
        let (q, probe) = probed();
        q.push(Level::Info, &format_args!("one {}", 1));
        q.push(Level::Error, &format_args!("two\nthree"));
        q.push(Level::Debug, &format_args!("four"));
        assert!(q.flush(Instant::now() + SOON));
        let writes = probe.writes();
        let messages: Vec<&str> = writes.iter().map(|w| message(w)).collect();
        assert_eq!(messages, ["one 1", "two", "three", "four"]);
        assert!(writes[1].contains(" ERROR two"), "{writes:?}");
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn write_errors_are_ignored_and_the_queue_still_drains() {
        let (q, probe) = probed();
        probe.set(|s| s.fail = true);
        for i in 0..2 * CAPACITY {
            q.push(Level::Info, &format_args!("lost {i}"));
            if i % 100 == 0 {
                assert!(q.flush(Instant::now() + SOON), "the writer stopped");
            }
        }
        assert!(q.flush(Instant::now() + SOON), "the writer stopped");
        probe.set(|s| s.fail = false);
        q.push(Level::Info, &format_args!("heard"));
        assert!(q.flush(Instant::now() + SOON));
        let writes = probe.writes();
        let messages: Vec<&str> = writes.iter().map(|w| message(w)).collect();
        assert_eq!(messages, ["heard"]);
    }

    #[test]
    fn a_stalled_writer_makes_lines_drop_and_the_notice_marks_the_gap() {
        // The writer holds "first": the queue takes CAPACITY more, and no
        // push waits.
        let (q, probe) = held_and_full();
        assert_eq!(q.dropped(), 0);
        for i in 0..10 {
            q.push(Level::Info, &format_args!("lost {i}"));
        }
        assert_eq!(q.dropped(), 10);
        let start = Instant::now();
        assert!(!q.wait_written(start + Duration::from_millis(50)));
        assert!(start.elapsed() >= Duration::from_millis(50));

        probe.set(|s| s.held = false);
        assert!(q.wait_written(Instant::now() + SOON));
        q.push(Level::Info, &format_args!("after"));
        assert!(q.flush(Instant::now() + SOON));

        let writes = probe.writes();
        assert_eq!(writes.len(), 1 + CAPACITY + 2, "{:?}", &writes[..3]);
        assert_eq!(message(&writes[0]), "first");
        for (i, w) in writes[1..=CAPACITY].iter().enumerate() {
            assert_eq!(message(w), format!("queued {i}"));
        }
        let notice = &writes[CAPACITY + 1];
        assert!(
            notice.ends_with(" WARN  log: 10 lines dropped (stderr is not keeping up)\n"),
            "{notice:?}"
        );
        assert_eq!(message(&writes[CAPACITY + 2]), "after");
        assert_eq!(q.dropped(), 10);
    }

    #[test]
    fn flush_tells_of_lines_dropped_at_the_end() {
        let (q, probe) = held_and_full();
        q.push(Level::Info, &format_args!("last"));
        assert_eq!(q.dropped(), 1);
        probe.set(|s| s.held = false);
        assert!(q.flush(Instant::now() + SOON));
        let writes = probe.writes();
        assert_eq!(writes.len(), 1 + CAPACITY + 1);
        let notice = writes.last().unwrap();
        assert!(
            notice.ends_with(" WARN  log: 1 line dropped (stderr is not keeping up)\n"),
            "{notice:?}"
        );
    }

    #[test]
    fn once_closing_a_line_waits_for_room_instead_of_being_dropped() {
        // The exit line of a peer whose stderr stalled and is read again
        // just as it exits: the queue is full, and the line waits for the
        // writer instead of being dropped.
        let (q, probe) = held_and_full();
        q.close(Instant::now() + SOON);
        // The reader comes back 50 ms later. Not a synchronisation: had it
        // come back first, the line would be queued all the same; coming
        // later, it makes the push wait, which is what is tested.
        let reader = {
            let probe = Arc::clone(&probe);
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                probe.set(|s| s.held = false);
            })
        };
        q.push(Level::Info, &format_args!("exiting (143)"));
        reader.join().unwrap();
        assert!(q.flush(Instant::now() + SOON));
        assert_eq!(q.dropped(), 0);
        let writes = probe.writes();
        assert_eq!(writes.len(), 1 + CAPACITY + 1);
        assert_eq!(message(writes.last().unwrap()), "exiting (143)");
    }

    #[test]
    fn flush_without_a_logger_returns_at_once() {
        // This test binary never installs the logger.
        assert!(flush(Instant::now()));
    }
}
