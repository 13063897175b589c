//! The command run after READY (`rollcall -- COMMAND`), as the operating
//! system sees it: its start, the signals it is sent and its end.
//!
//! The machine decides ([`Action::StartJob`], [`Action::SignalJob`]); this
//! module only performs, and says how the command ended as a [`JobEnd`]
//! for [`Input::JobEnded`]. It never waits: the runtime reaps the command
//! with [`Job::reap`] when SIGCHLD arrives.
//!
//! - The command inherits stdin, stdout and stderr, and rollcall's
//!   environment with [`environment`] added. It starts with no signal
//!   blocked, and with the default action for each that rollcall catches.
//!   It stays in rollcall's process group, so that it can read a terminal
//!   and be stopped with it.
//! - A command that cannot be started ends at once, as a shell says it:
//!   127 when it is not found, 126 when it cannot be executed.
//! - A signal goes to the command's process alone, and never once it has
//!   been reaped: its pid may then name another process.
//!
//! [`Action::StartJob`]: crate::machine::Action::StartJob
//! [`Action::SignalJob`]: crate::machine::Action::SignalJob
//! [`Input::JobEnded`]: crate::machine::Input::JobEnded

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io::{self, ErrorKind};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use log::warn;

use crate::hosts::Entry;
use crate::machine::{JobEnd, Stop};

/// What to run: the words after `--`, and what is added to its
/// environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The program and its arguments; never empty.
    pub command: Vec<OsString>,
    pub env: Vec<(&'static str, String)>,
}

impl Spec {
    /// `command` run by the peer of entry `me` (0-based) of `entries`.
    pub fn new(command: Vec<OsString>, entries: &[Entry], me: usize) -> Spec {
        Spec {
            command,
            env: environment(entries, me),
        }
    }
}

/// What the command learns of its place in the cluster: this peer's entry
/// as written, its position from 1, the number of entries, and every entry
/// in file order, comma-separated.
pub fn environment(entries: &[Entry], me: usize) -> Vec<(&'static str, String)> {
    let peers: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
    vec![
        ("ROLLCALL_NAME", entries[me].text.clone()),
        ("ROLLCALL_INDEX", (me + 1).to_string()),
        ("ROLLCALL_SIZE", entries.len().to_string()),
        ("ROLLCALL_PEERS", peers.join(",")),
    ]
}

/// The command as a log line shows it: its words, each quoted where a
/// shell would need it.
pub fn display(command: &[OsString]) -> String {
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
    };
    let words: Vec<String> = command
        .iter()
        .map(|w| {
            let w = w.to_string_lossy();
            if plain(&w) {
                w.into_owned()
            } else {
                crate::quote(&w)
            }
        })
        .collect();
    words.join(" ")
}

/// Why the command could not be started, in a shell's words.
#[derive(Debug)]
pub struct SpawnError {
    /// The program, quoted for the message.
    program: String,
    /// 127 or 126.
    code: u8,
    reason: String,
}

impl SpawnError {
    /// How the command ended: it never started.
    pub fn end(&self) -> JobEnd {
        JobEnd::NotStarted(self.code)
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot run {}: {}", self.program, self.reason)
    }
}

/// `program` could not be started for `e`: 127 if it does not exist (or
/// an interpreter its first line names does not), 126 for any other
/// reason (not executable, a directory, not a format the kernel runs).
pub fn spawn_error(program: &OsStr, e: &io::Error) -> SpawnError {
    let (code, reason) = match e.kind() {
        ErrorKind::NotFound => (127, "not found".to_string()),
        _ => (126, crate::io_reason(e)),
    };
    SpawnError {
        program: crate::quote(&program.to_string_lossy()),
        code,
        reason,
    }
}

/// How a command with this wait status ended.
pub fn end_of(status: ExitStatus) -> JobEnd {
    match (status.code(), status.signal()) {
        // Exit statuses are 0 to 255 on Linux.
        (Some(code), _) => JobEnd::Exited(code as u8),
        (None, Some(signal)) => JobEnd::Killed(signal as u8),
        // Neither: not a termination, which a wait without WUNTRACED
        // never reports. Say it as a failure rather than success.
        (None, None) => JobEnd::Exited(u8::MAX),
    }
}

/// The command's process, from its start to its reaping.
pub struct Job {
    spec: Spec,
    state: State,
}

enum State {
    NotStarted,
    /// Its pid, until it is reaped.
    Running(libc::pid_t),
    /// Reaped, or never started: nothing to signal any more.
    Over,
}

impl Job {
    pub fn new(spec: Spec) -> Job {
        Job {
            spec,
            state: State::NotStarted,
        }
    }

    /// The command, for the log.
    pub fn describe(&self) -> String {
        display(&self.spec.command)
    }

    /// Starts the command, once; its pid. On an error the command counts
    /// as over: [`SpawnError::end`] is its end.
    pub fn start(&mut self) -> Result<u32, SpawnError> {
        if let Some(pid) = self.pid() {
            return Ok(pid);
        }
        match spawn(&self.spec.command, &self.spec.env) {
            Ok(pid) => {
                self.state = State::Running(pid);
                Ok(pid as u32)
            }
            Err(e) => {
                self.state = State::Over;
                Err(spawn_error(&self.spec.command[0], &e))
            }
        }
    }

    /// The pid of the command while it runs (or has ended and is not
    /// reaped yet).
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Running(pid) => Some(*pid as u32),
            State::NotStarted | State::Over => None,
        }
    }

    /// The command runs in rollcall's own process group: a signal the
    /// terminal sends to that group (Ctrl-C) reaches it directly.
    pub fn shares_our_group(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        // SAFETY: getpgid and getpgrp touch no memory of ours.
        let (theirs, ours) = unsafe { (libc::getpgid(pid as libc::pid_t), libc::getpgrp()) };
        theirs != -1 && theirs == ours
    }

    /// Sends `signal` to the command; its pid, or `None` if it is not
    /// running (not started, or reaped).
    pub fn signal(&mut self, signal: u8) -> io::Result<Option<u32>> {
        let Some(pid) = self.pid() else {
            return Ok(None);
        };
        // SAFETY: kill(2) touches no memory of ours. The pid is our child's
        // and it has not been reaped (a zombie at worst), so it names no
        // other process.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::c_int::from(signal)) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(pid))
    }

    /// Reaps the command if it has ended, without waiting: how it ended,
    /// once; `None` while it runs, and ever after.
    pub fn reap(&mut self) -> io::Result<Option<JobEnd>> {
        let State::Running(pid) = self.state else {
            return Ok(None);
        };
        let Some(status) = wait(pid, libc::WNOHANG)? else {
            return Ok(None);
        };
        self.state = State::Over;
        Ok(Some(end_of(status)))
    }
}

/// Starts `command` with `env` added to rollcall's environment, found on
/// PATH as a shell finds it (`posix_spawnp`), with rollcall's stdin,
/// stdout and stderr: its pid. It starts with no signal blocked and with
/// the default action for each signal rollcall catches, and for SIGPIPE,
/// which the standard library has rollcall ignore.
///
/// rollcall blocks the signals it catches ([`crate::signals`]), and a
/// mask outlives `exec` where a handler does not. `std::process::Command`
/// can clear it only in a hook between `fork` and `exec`, and its `exec`
/// after a fork (`execvp`) runs a file of no format the kernel knows as a
/// shell script, where a spawn says "exec format error" (126).
fn spawn(command: &[OsString], env: &[(&'static str, String)]) -> io::Result<libc::pid_t> {
    let c_string = |bytes: Vec<u8>| {
        CString::new(bytes).map_err(|_| {
            io::Error::new(
                ErrorKind::InvalidInput,
                "a NUL byte in an argument or the environment",
            )
        })
    };
    let argv = command
        .iter()
        .map(|w| c_string(w.as_bytes().to_vec()))
        .collect::<io::Result<Vec<_>>>()?;
    let inherited = std::env::vars_os().filter(|(k, _)| !env.iter().any(|(name, _)| k == name));
    let added = env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    let envp = inherited
        .chain(added)
        .map(|(k, v)| c_string([k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<io::Result<Vec<_>>>()?;
    let pointers = |strings: &[CString]| -> Vec<*mut libc::c_char> {
        let each = strings.iter().map(|s| s.as_ptr().cast_mut());
        each.chain(std::iter::once(std::ptr::null_mut())).collect()
    };
    let (argv_p, envp_p) = (pointers(&argv), pointers(&envp));
    let ok = |rc: libc::c_int| match rc {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    };
    let mut attr = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
    let mut none = MaybeUninit::<libc::sigset_t>::uninit();
    let mut defaults = MaybeUninit::<libc::sigset_t>::uninit();
    let mut pid = 0;
    // SAFETY: the attributes and the sets are initialised before they are
    // read, and the attributes destroyed once; argv and envp are arrays
    // of pointers to C strings that live to the end of the call, each
    // ended by a null pointer.
    unsafe {
        libc::sigemptyset(none.as_mut_ptr());
        libc::sigemptyset(defaults.as_mut_ptr());
        for signal in crate::signals::caught().into_iter().chain([libc::SIGPIPE]) {
            libc::sigaddset(defaults.as_mut_ptr(), signal);
        }
        ok(libc::posix_spawnattr_init(attr.as_mut_ptr()))?;
        let spawned = (|| {
            ok(libc::posix_spawnattr_setsigmask(
                attr.as_mut_ptr(),
                none.as_ptr(),
            ))?;
            ok(libc::posix_spawnattr_setsigdefault(
                attr.as_mut_ptr(),
                defaults.as_ptr(),
            ))?;
            let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            ok(libc::posix_spawnattr_setflags(
                attr.as_mut_ptr(),
                flags as libc::c_short,
            ))?;
            ok(libc::posix_spawnp(
                &mut pid,
                argv[0].as_ptr(),
                std::ptr::null(),
                attr.as_ptr(),
                argv_p.as_ptr(),
                envp_p.as_ptr(),
            ))
        })();
        libc::posix_spawnattr_destroy(attr.as_mut_ptr());
        spawned?;
    }
    Ok(pid)
}

/// Our child `pid`'s status once it has ended; with `WNOHANG`, `None`
/// while it runs.
fn wait(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status it is given.
        match unsafe { libc::waitpid(pid, &mut status, flags) } {
            0 => return Ok(None),
            -1 if io::Error::last_os_error().kind() == ErrorKind::Interrupted => {}
            -1 => return Err(io::Error::last_os_error()),
            _ => return Ok(Some(ExitStatus::from_raw(status))),
        }
    }
}

impl Drop for Job {
    /// rollcall leaves while the command runs only on a failure of its
    /// own: the command is told to stop rather than left behind unknown.
    fn drop(&mut self) {
        let _ = self.reap();
        if let Some(pid) = self.pid()
            && self.signal(Stop::TERMINATE.0).is_ok()
        {
            warn!("the command (pid {pid}) still runs as rollcall exits: sent it SIGTERM");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use crate::hosts;

    fn spec(words: &[&str]) -> Spec {
        Spec {
            command: words.iter().map(OsString::from).collect(),
            env: Vec::new(),
        }
    }

    /// A directory of this test's own, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let path =
                std::env::temp_dir().join(format!("rollcall-job-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        fn file(&self, name: &str, text: &str, mode: u32) -> String {
            let path = self.0.join(name);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path.display().to_string()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Starts `words` and waits for its end, as the runtime would learn it.
    fn run(words: &[&str]) -> Result<JobEnd, String> {
        let mut job = Job::new(spec(words));
        job.start().map_err(|e| {
            assert_eq!(job.pid(), None);
            format!("{} {e}", e.end().code())
        })?;
        let State::Running(pid) = job.state else {
            panic!("not running");
        };
        let status = wait(pid, 0).unwrap().expect("an end");
        job.state = State::Over;
        Ok(end_of(status))
    }

    #[test]
    fn wait_statuses_map_to_how_the_command_ended() {
        assert_eq!(end_of(ExitStatus::from_raw(0)), JobEnd::Exited(0));
        assert_eq!(end_of(ExitStatus::from_raw(7 << 8)), JobEnd::Exited(7));
        assert_eq!(end_of(ExitStatus::from_raw(255 << 8)), JobEnd::Exited(255));
        assert_eq!(end_of(ExitStatus::from_raw(9)), JobEnd::Killed(9));
        // Killed with a core dump: still the signal.
        assert_eq!(end_of(ExitStatus::from_raw(0x80 | 11)), JobEnd::Killed(11));
        assert_eq!(JobEnd::Killed(9).code(), 137);
        assert_eq!(JobEnd::Killed(15).code(), 143);
    }

    #[test]
    fn real_commands_end_as_they_did() {
        assert_eq!(run(&["sh", "-c", "exit 7"]), Ok(JobEnd::Exited(7)));
        assert_eq!(run(&["true"]), Ok(JobEnd::Exited(0)));
        assert_eq!(run(&["sh", "-c", "kill -KILL $$"]), Ok(JobEnd::Killed(9)));
        assert_eq!(run(&["sh", "-c", "kill -TERM $$"]), Ok(JobEnd::Killed(15)));
    }

    #[test]
    fn spawn_errors_are_127_when_not_found_and_126_otherwise() {
        let dir = Dir::new("spawn");
        let plain = dir.file("plain", "echo hi\n", 0o644);
        let garbage = dir.file("garbage", "\x7fELF not really", 0o755);
        let bad_interpreter = dir.file("script", "#!/no/such/interpreter\n", 0o755);
        let missing = format!("{}/missing", dir.0.display());
        let cases = [
            (missing.as_str(), "127 cannot run '{}': not found"),
            ("rollcall-no-such-command", "127 cannot run '{}': not found"),
            (&bad_interpreter, "127 cannot run '{}': not found"),
            (&plain, "126 cannot run '{}': permission denied"),
            ("/", "126 cannot run '{}': permission denied"),
            (&garbage, "126 cannot run '{}': exec format error"),
        ];
        for (program, want) in cases {
            let got = run(&[program]).expect_err(program);
            assert_eq!(got, want.replace("{}", program), "{program}");
        }
        // As an error, over: nothing to signal or reap.
        let mut job = Job::new(spec(&[&missing]));
        assert!(job.start().is_err());
        assert_eq!(job.signal(15).unwrap(), None);
        assert_eq!(job.reap().unwrap(), None);
    }

    #[test]
    fn a_job_is_signalled_while_it_runs_and_never_once_reaped() {
        let mut job = Job::new(spec(&["sleep", "30"]));
        assert_eq!(job.signal(15).unwrap(), None, "not started");
        let pid = job.start().unwrap();
        assert_eq!(job.reap().unwrap(), None, "still running");
        assert_eq!(job.signal(15).unwrap(), Some(pid));
        // Reaped only once it has ended; a bounded wait for it.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let end = loop {
            if let Some(end) = job.reap().unwrap() {
                break end;
            }
            assert!(std::time::Instant::now() < until, "sleep outlived SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(end, JobEnd::Killed(15));
        assert_eq!(job.reap().unwrap(), None, "reaped once");
        assert_eq!(job.signal(9).unwrap(), None, "never after reaping");
    }

    #[test]
    fn the_environment_places_the_peer_in_the_cluster() {
        let entries =
            hosts::parse("# comment\nalpha:7000\n\n127.0.0.1:7001\n[::1]\n", 7610).expect("hosts");
        let env = environment(&entries, 1);
        let want = [
            ("ROLLCALL_NAME", "127.0.0.1:7001"),
            ("ROLLCALL_INDEX", "2"),
            ("ROLLCALL_SIZE", "3"),
            ("ROLLCALL_PEERS", "alpha:7000,127.0.0.1:7001,[::1]"),
        ];
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(got, want);
        // And the command gets it.
        let mut spec = spec(&[
            "sh",
            "-c",
            "test \"$ROLLCALL_INDEX $ROLLCALL_SIZE $ROLLCALL_NAME $ROLLCALL_PEERS\" = '2 3 127.0.0.1:7001 alpha:7000,127.0.0.1:7001,[::1]'",
        ]);
        spec.env = env;
        let mut job = Job::new(spec);
        job.start().unwrap();
        let State::Running(pid) = job.state else {
            panic!("not running");
        };
        assert!(wait(pid, 0).unwrap().expect("an end").success());
        job.state = State::Over;
    }

    #[test]
    fn commands_are_shown_as_a_shell_would_take_them() {
        let words = ["sh", "-c", "echo \"$X\"; exit 7", "", "a=b,c/d"];
        let command: Vec<OsString> = words.iter().map(OsString::from).collect();
        assert_eq!(display(&command), r#"sh -c 'echo "$X"; exit 7' '' a=b,c/d"#);
    }
}
