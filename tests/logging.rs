//! The log must never stall or stop the protocol, and lines from processes
//! sharing one stderr must stay whole.
//!
//! - A reader of stderr that goes away (`rollcall ... 2>&1 | grep -m1 -q
//!   READY`) makes every later write fail with EPIPE: the peer carries on.
//! - A reader that never reads fills the pipe: the peer keeps its heartbeat
//!   schedule, dropping log lines and saying how many once it can.
//! - Eight peers debugging into one `O_APPEND` file: every line of the file
//!   is one whole log line.
//!
//! The tests run one at a time: two of them load the machine on purpose,
//! and one watches a 150 ms silence threshold.

mod common;

use common::*;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, PipeReader, PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

/// Arguments for `entry` of `hosts` with its own timeout and interval.
fn args(hosts: &Path, entry: &str, timeout: &str, interval: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--hosts",
        &hosts.display().to_string(),
        "--name",
        entry,
        "--timeout",
        timeout,
        "--interval",
        interval,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// True if `b[i..]` starts like a log line:
/// `YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL ` (the level padded to five).
fn prefix_at(b: &[u8], i: usize) -> bool {
    const TIME: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddZ ";
    const LEVELS: [&[u8]; 5] = [b"ERROR ", b"WARN  ", b"INFO  ", b"DEBUG ", b"TRACE "];
    let rest = &b[i..];
    rest.len() >= TIME.len() + 6
        && TIME.iter().zip(rest).all(|(&p, &c)| match p {
            b'd' => c.is_ascii_digit(),
            _ => p == c,
        })
        && LEVELS.iter().any(|l| rest[TIME.len()..].starts_with(l))
}

/// One whole log line: it starts like one, and no other starts inside it.
fn whole_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    prefix_at(b, 0) && (1..b.len()).all(|i| !prefix_at(b, i))
}

/// The lines `r` carries, each sent as it comes, then `None` at its end.
fn read_lines<R: io::Read + Send + 'static>(r: R) -> Receiver<Option<String>> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => {
                    if tx.send(Some(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });
    rx
}

/// Every line on `rx` up to its end; panics at `until`.
fn collect_to_end(rx: &Receiver<Option<String>>, what: &str, until: Instant) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(l)) => lines.push(l),
            Ok(None) | Err(RecvTimeoutError::Disconnected) => return lines,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "{what}: still open at the deadline after {} lines",
                    lines.len()
                )
            }
        }
    }
}

/// What fills a pipe before its peer starts, a line at a time.
const JUNK: &str = "junk that fills the pipe before rollcall starts";

/// Fills the pipe behind `w` to the brim (it is non-blocking only while
/// this runs). Returns how many bytes it holds.
fn fill(w: &mut PipeWriter) -> usize {
    let fd = w.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function borrows, open for its
    // whole duration.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "F_GETFL: {}", io::Error::last_os_error());
    // SAFETY: as above.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    assert_eq!(rc, 0, "F_SETFL: {}", io::Error::last_os_error());
    let line = format!("{JUNK}\n");
    let block = line.repeat(4096 / line.len());
    let mut held = 0;
    for chunk in [&block, &line] {
        loop {
            match w.write(chunk.as_bytes()) {
                Ok(n) => {
                    assert_eq!(n, chunk.len(), "a short write to a pipe");
                    held += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the pipe: {e}"),
            }
        }
    }
    // SAFETY: as above.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    assert_eq!(rc, 0, "F_SETFL: {}", io::Error::last_os_error());
    held
}

/// The first line of `r`; `r` is closed before the line is sent, as
/// `grep -m1` does.
fn first_line_then_close(r: PipeReader) -> Receiver<io::Result<String>> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = String::new();
        let result = r.read_line(&mut line).map(|_| line);
        drop(r);
        let _ = tx.send(result);
    });
    rx
}

/// `rollcall ... 2>&1 | grep -m1 -q READY`: the reader of peer A's stderr
/// closes it after the first line, so each later log write fails with
/// EPIPE. A must carry on as if nothing had happened: READY with B, exit 0
/// at its timeout, and never silent for B.
///
/// What it detects: a log write error that panics or aborts the process
/// (fern's fallback panics when it cannot write to stderr either: exit 101
/// here, 134 in the release build), or that stops the loop.
///
/// B starts first and both have the same timeout, so B leaves first and its
/// whole log falls within A's life: a `silent` line there is about A.
#[test]
fn a_peer_whose_stderr_reader_has_gone_carries_on() {
    const BLOCK: u16 = 70;
    let _serial = serial();
    let dir = TestDir::new("stderr_reader_gone");
    let e = entries(BLOCK, 2);
    let hosts = dir.hosts("hosts", &e);
    let mut b = Peer::spawn("peer B", &args(&hosts, &e[1], "3s", "200ms", &[]));
    let (reader, writer) = io::pipe().expect("pipe");
    let mut a = Peer::spawn_with_stderr(
        "peer A (stderr closed after one line)",
        &args(&hosts, &e[0], "3s", "200ms", &[]),
        writer.into(),
    );
    let first = first_line_then_close(reader)
        .recv_timeout(WAIT)
        .expect("A's first stderr line within WAIT")
        .expect("reading A's stderr");
    assert!(
        first.contains(" bound to "),
        "A's first stderr line is not the start line: {first:?}"
    );

    let until = deadline(WAIT);
    a.expect_exit_after_one_ready(0, until);
    b.expect_exit_after_one_ready(0, until);
    let silent: Vec<String> = b
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains(" silent for "))
        .collect();
    assert!(
        silent.is_empty(),
        "B took A for silent: {silent:?}\n{}",
        b.describe()
    );
}

/// Peer A debugs (a line per datagram) into a pipe nobody reads, full
/// before A starts, among seven partners at `-i 50ms` (a heartbeat each
/// way per pair and interval: about 280 lines a second). The partners must
/// hear A all along: none may call it silent (3 intervals, 150 ms) over
/// 6 s, which fills A's queue of 1 024 lines. Then the pipe is read: what A wrote
/// must be whole lines, among them the notice of the lines it dropped
/// (more than its queue holds were logged while stalled).
///
/// What it detects: a log write that blocks the loop (A stops
/// heartbeating and answering: silent, or never READY when the very first
/// line blocks), and a log that buffers without bound or drops silently
/// instead of dropping and counting.
#[test]
fn a_stalled_stderr_does_not_stall_the_peer() {
    const BLOCK: u16 = 71;
    const N: u16 = 8;
    const STALL: Duration = Duration::from_secs(6);
    let _serial = serial();
    let dir = TestDir::new("stalled_stderr");
    let e = entries(BLOCK, N);
    let hosts = dir.hosts("hosts", &e);
    let (reader, mut writer) = io::pipe().expect("pipe");
    let junk = fill(&mut writer);
    let mut peers = vec![Peer::spawn_with_stderr(
        "peer A (stderr stalled)",
        &args(&hosts, &e[0], "60s", "50ms", &["--debug"]),
        writer.into(),
    )];
    for (i, entry) in e.iter().enumerate().skip(1) {
        peers.push(Peer::spawn(
            &format!("peer{} ({entry})", i + 1),
            &args(&hosts, entry, "60s", "50ms", &[]),
        ));
    }
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_ready(until);
    }

    let (a, partners) = peers.split_at_mut(1);
    let about_a = |l: &str| l.contains(" silent for ") && l.contains(&e[0]);
    let mut refs: Vec<&mut Peer> = partners.iter_mut().collect();
    if let Some((i, line)) = wait_any_line(&mut refs, Stream::Stderr, about_a, deadline(STALL)) {
        panic!(
            "{} took A for silent while A's stderr was stalled ({junk} bytes waiting): {line}\n{}",
            partners[i].label,
            partners[i].describe()
        );
    }
    assert!(
        a[0].is_running(),
        "A exited while its stderr was stalled\n{}",
        a[0].describe()
    );

    let lines = read_lines(reader);
    stop_all_after_one_ready(&mut peers);
    let lines = collect_to_end(&lines, "A's stderr", deadline(WAIT));
    let log: Vec<&String> = lines.iter().filter(|l| *l != JUNK).collect();
    let torn: Vec<&&String> = log.iter().filter(|l| !whole_log_line(l)).take(5).collect();
    assert!(torn.is_empty(), "A's stderr has torn lines: {torn:?}");
    let notice = log.iter().find(|l| {
        l.contains(" WARN  log: ") && l.ends_with(" lines dropped (stderr is not keeping up)")
    });
    eprintln!(
        "A wrote {} log lines after its stall; notice: {notice:?}",
        log.len()
    );
    assert!(
        notice.is_some(),
        "A's stderr does not say that lines were dropped ({} log lines); its last lines: {:?}",
        log.len(),
        &log[log.len().saturating_sub(5)..]
    );
    assert!(
        log.iter().any(|l| l.contains(" INFO  exiting (143)")),
        "A's stderr has no exit line; its last lines: {:?}",
        &log[log.len().saturating_sub(5)..]
    );
}

/// Eight peers debugging at `-i 50ms` into one stderr file opened with
/// O_APPEND, as compose or a CI job shares one log: every line of the file
/// must be one whole log line, and each peer's start and exit lines must
/// be there.
///
/// What it detects: a log line written in several `write` calls (pieces
/// of lines from different processes interleave mid-line), and the last
/// lines lost at exit.
#[test]
fn peers_sharing_one_stderr_file_write_whole_lines() {
    const BLOCK: u16 = 72;
    const N: u16 = 8;
    let _serial = serial();
    let dir = TestDir::new("shared_stderr");
    let e = entries(BLOCK, N);
    let hosts = dir.hosts("hosts", &e);
    let path = dir.file("stderr.log");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open the shared stderr file");
    let mut peers: Vec<Peer> = e
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            Peer::spawn_with_stderr(
                &format!("peer{} ({entry})", i + 1),
                &args(&hosts, entry, "4s", "50ms", &["--debug"]),
                file.try_clone().expect("clone the stderr file").into(),
            )
        })
        .collect();
    drop(file);
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_exit_after_one_ready(0, until);
    }

    let text = fs::read_to_string(&path).expect("read the shared stderr file");
    assert!(text.ends_with('\n'), "the file ends mid-line");
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("the shared stderr file holds {} lines", lines.len());
    let torn: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !whole_log_line(l))
        .collect();
    assert!(
        torn.is_empty(),
        "{} of {} lines are not whole log lines; the first few:\n{}",
        torn.len(),
        lines.len(),
        torn[..torn.len().min(10)].join("\n")
    );
    // A few seconds of a line per datagram: enough lines written at once
    // by several processes for torn lines to show.
    assert!(
        lines.len() > 1000 * usize::from(N),
        "only {} lines: too few to test anything",
        lines.len()
    );
    for entry in &e {
        let start = format!(" INFO  rollcall {entry} (peer ");
        assert!(
            lines.iter().any(|l| l.contains(&start)),
            "no start line for {entry}"
        );
    }
    let exits = lines
        .iter()
        .filter(|l| l.contains(" INFO  exiting (0)"))
        .count();
    assert_eq!(exits, usize::from(N), "exit lines in the shared file");
}
