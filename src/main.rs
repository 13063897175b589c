//! Wires the parts together: flags, hosts file, socket, logging, the loop,
//! and the exit status.

use std::collections::hash_map::RandomState;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, error, info, warn};

use rollcall::cli::{self, Command, Config, LogLevel, Output};
use rollcall::hosts::{self, Entry, NameError};
use rollcall::job;
use rollcall::machine::{JobParams, Node, Params};
use rollcall::runtime::{self, Options};
use rollcall::signals;
use rollcall::sockets::{self, Sockets};
use rollcall::wire::Key;
use rollcall::{Exit, io_reason, quote, runtime::log_exit};
use rollcall::{logging, output};

fn main() -> ExitCode {
    let exit = match cli::parse(std::env::args_os().skip(1), |k| std::env::var_os(k)) {
        Ok(Command::Help) => {
            let _ = write!(std::io::stdout(), "{}", cli::HELP);
            Exit::Ready
        }
        Ok(Command::Version) => {
            let _ = writeln!(
                std::io::stdout(),
                "rollcall {} ({})",
                env!("CARGO_PKG_VERSION"),
                env!("ROLLCALL_BUILD")
            );
            Exit::Ready
        }
        Ok(Command::Run(config)) => {
            let json = config.output == Output::Json;
            let (exit, reason) = run(config);
            if json {
                let time = std::time::SystemTime::now();
                runtime::print_json(&output::exit(exit.code(), &reason, time));
            }
            exit
        }
        Ok(Command::Probe { ready_file }) => probe(&ready_file),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "rollcall: {e}");
            Exit::Usage
        }
    };
    // The last lines (the exit line) reach a healthy stderr; a stalled one
    // delays the exit by at most logging::EXIT_WAIT.
    logging::flush_for_exit();
    ExitCode::from(exit.code())
}

/// Runs a peer: how it exits, and why in words.
fn run(config: Config) -> (Exit, String) {
    // Before the log's thread starts, so that it inherits the signals'
    // mask and none can end the process by its default action there.
    let signals = signals::catch();
    init_logging(config.log);
    let signals = match signals {
        Ok(s) => s,
        Err(e) => {
            error!("cannot catch signals: {e}");
            return (Exit::Failure, format!("cannot catch signals: {e}"));
        }
    };
    let Setup {
        entries,
        me,
        sockets,
        key,
    } = match setup(&config) {
        Ok(s) => s,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "rollcall: {message}");
            return (Exit::Usage, message);
        }
    };
    let bound = sockets.describe();
    let params = Params {
        interval: config.interval,
        timeout: config.timeout,
        barrier: config.barrier,
        authenticated: key.is_some(),
        job: config.command.as_ref().map(|_| JobParams {
            exit_on_down: config.exit_on_down,
        }),
    };
    let mut node = Node::new(
        &entries,
        me,
        hosts::fingerprint(&entries),
        incarnation(),
        random_seed(),
        params,
    );
    let then = match &config.command {
        Some(command) => format!(
            ", then runs {}{}",
            job::display(command),
            if config.exit_on_down {
                " (exit on down)"
            } else {
                ""
            }
        ),
        None => String::new(),
    };
    info!(
        "rollcall {} (peer {} of {}) bound to {bound}, timeout {}, interval {}{}{}{then}",
        entries[me].text,
        me + 1,
        entries.len(),
        humantime::format_duration(config.timeout),
        humantime::format_duration(config.interval),
        if config.barrier { ", barrier" } else { "" },
        if key.is_some() { ", authenticated" } else { "" }
    );
    if let Some(capped) = sockets.size_buffers(entries.len()) {
        // The kernel reports twice what it grants, as rmem_max bounds it.
        warn!(
            "the receive buffer is capped at {} KiB, and {} peers answering at once want {} KiB: datagrams may be lost to a burst (raise it with: sysctl -w net.core.rmem_max={})",
            capped.got / 1024,
            entries.len(),
            capped.wanted / 1024,
            capped.wanted / 2
        );
    }
    let options = Options {
        ready_to: config.ready_to,
        ready_file: config.ready_file.clone(),
        key,
        job: config
            .command
            .clone()
            .map(|command| job::Spec::new(command, &entries, me)),
        json: config.output == Output::Json,
    };
    let result = runtime::run(&mut node, sockets, signals, options);
    // Nothing waits on the log any more: the exit line is not dropped for
    // a stderr that is only now catching up.
    logging::closing();
    match result {
        Ok(reason) => {
            log_exit(&reason, &node);
            (reason.exit(), reason.to_string())
        }
        Err(e) => {
            error!("runtime failure: {e}");
            (Exit::Failure, format!("runtime failure: {e}"))
        }
    }
}

/// `rollcall probe`: READY if the ready file exists. Exit 1 (not 124) when
/// not, as container healthchecks expect.
fn probe(ready_file: &Path) -> Exit {
    match std::fs::metadata(ready_file) {
        Ok(_) => {
            let _ = writeln!(std::io::stdout(), "ready");
            Exit::Ready
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stdout(),
                "not ready: {}: {}",
                ready_file.display(),
                io_reason(&e)
            );
            Exit::Failure
        }
    }
}

/// What the configuration gives the loop.
struct Setup {
    entries: Vec<Entry>,
    me: usize,
    sockets: Sockets,
    key: Option<Key>,
}

/// Everything that can fail as a configuration error: reads the hosts
/// file and the secret, finds our entry and binds the socket.
fn setup(config: &Config) -> Result<Setup, String> {
    let path = config.hosts.display();
    let bytes = read_regular(&config.hosts, "hosts file", MAX_HOSTS_FILE)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
        format!("{path}:{line}: not UTF-8 text")
    })?;
    let entries = hosts::parse(&text, config.port).map_err(|e| match e.line {
        Some(line) => format!("{path}:{line}: {}", e.message),
        None => format!("{path}: {}", e.message),
    })?;
    let name = match &config.name {
        Some(name) => name.clone(),
        None => hostname().ok_or("cannot read this machine's hostname: set --name")?,
    };
    let me = hosts::find_self(&entries, &name).map_err(|e| match e {
        NameError::NoMatch => {
            let listed: Vec<&str> = entries.iter().take(5).map(|e| e.text.as_str()).collect();
            let more = if entries.len() > 5 { ", ..." } else { "" };
            format!(
                "no entry in {path} matches name {} (entries: {}{more}); set --name or ROLLCALL_NAME",
                quote(&name),
                listed.join(", ")
            )
        }
        NameError::Several(lines) => {
            let lines: Vec<String> = lines.iter().map(|l| format!("{path}:{l}")).collect();
            format!(
                "several entries match name {} ({}); give the whole entry as --name",
                quote(&name),
                lines.join(", ")
            )
        }
    })?;
    let key = config.secret_file.as_deref().map(read_secret).transpose()?;
    if let Some(path) = &config.ready_file {
        prepare_ready_file(path)?;
    }
    let sockets = sockets::bind(config.bind, &entries[me])?;
    Ok(Setup {
        entries,
        me,
        sockets,
        key,
    })
}

/// The largest hosts file read: 65 535 entries (the most the wire's ids
/// can name) of a long name each, with room for comments.
const MAX_HOSTS_FILE: u64 = 32 << 20;
/// The largest secret file read.
const MAX_SECRET_FILE: u64 = 64 << 10;

/// Reads `path`, the `what` of the configuration, if it is a regular file
/// of at most `limit` bytes. It is opened without blocking, so that a FIFO
/// cannot hang the start (signals are caught but not served until the
/// loop runs), and a device such as /dev/zero is refused before a byte is
/// read.
fn read_regular(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read {what} {shown}: {}", io_reason(&e)))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {what} {shown}: {}", io_reason(&e)))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let is = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "something else"
        };
        return Err(format!(
            "{what} {shown} is not a regular file ({is}): write it to a file first"
        ));
    }
    if meta.len() > limit {
        return Err(format!(
            "{what} {shown} is {} bytes, more than the {limit} bytes a {what} may have",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: never past the limit.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what} {shown}: {}", io_reason(&e)))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{what} {shown} is more than the {limit} bytes a {what} may have"
        ));
    }
    Ok(bytes)
}

/// Removes a ready file left by a process that was killed (it speaks of an
/// earlier run) before the start is announced, and makes sure the file can
/// be created: found at READY, a read-only directory would leave a
/// healthcheck failing with no hint why.
fn prepare_ready_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    match std::fs::remove_file(path) {
        Ok(()) => info!("removed a stale ready file {shown}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "cannot remove the stale ready file {shown}: {}",
                io_reason(&e)
            ));
        }
    }
    // A file of our own beside it, created and removed: the ready file
    // itself must not appear before READY.
    let name = path
        .file_name()
        .map_or_else(|| "ready".into(), |n| n.to_string_lossy().into_owned());
    let trial = path.with_file_name(format!(".{name}.{}.check", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&trial)
        .map_err(|e| {
            format!(
                "cannot create the ready file {shown}: {} (its directory must exist and be writable)",
                io_reason(&e)
            )
        })?;
    let _ = std::fs::remove_file(&trial);
    Ok(())
}

/// The shared secret: the file's bytes, less trailing white space (so that
/// `echo` and `printf` make the same secret).
fn read_secret(path: &Path) -> Result<Key, String> {
    let bytes = read_regular(path, "secret file", MAX_SECRET_FILE)?;
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    if end == 0 {
        return Err(format!("secret file {} is empty", path.display()));
    }
    if end < 16 {
        warn!(
            "secret file {} holds only {end} bytes: a secret of 16 or more random bytes resists guessing",
            path.display()
        );
    }
    Ok(Key::from_secret(&bytes[..end]))
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, which is passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// New at every start and larger than the last one: the start time in
/// microseconds.
fn incarnation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

/// The standard library's per-process random keys, as a seed for jitter.
fn random_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

fn init_logging(level: LogLevel) {
    let filter = match level {
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Quiet => LevelFilter::Warn,
    };
    if let Err(e) = logging::init(filter) {
        let _ = writeln!(std::io::stderr(), "rollcall: cannot set up logging: {e}");
    }
}
