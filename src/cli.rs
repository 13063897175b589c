//! The command line and the environment, into a [`Config`].
//!
//! Every flag has an environment variable for container users; a flag wins
//! over its variable. Errors name the flag or the variable they are about.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

pub const DEFAULT_PORT: u16 = 7610;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Below this an interval makes the timers spin and every scheduling
/// hiccup a silence.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Above this a peer would take hours to notice anything.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// A century (of humantime's 365.25-day years, so that `100y` is
/// accepted): long enough for any job, short enough that every deadline
/// computed from it is a valid instant.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 31_557_600);

pub const HELP: &str = "\
rollcall: wait until every peer in a hosts file is up, over UDP.

Each peer heartbeats every other peer and acknowledges what it hears. Once
it has exchanged both ways with every peer it prints READY on stdout, then
keeps answering late and restarted peers until its timeout.

Usage: rollcall -h HOSTS [OPTIONS] [-- COMMAND [ARGS...]]
       rollcall probe [--ready-file PATH]

With a COMMAND, rollcall runs it once READY (with --barrier, once every
peer is READY), with stdin, stdout and stderr its own, and these added to
its environment:
  ROLLCALL_NAME    this peer's entry, as written in the hosts file
  ROLLCALL_INDEX   its position in the file, from 1
  ROLLCALL_SIZE    the number of entries
  ROLLCALL_PEERS   every entry, comma-separated, in file order
From its start the timeout no longer applies: rollcall answers its peers
while the command runs, and exits with its status. A signal that would stop
rollcall (SIGTERM, SIGINT, SIGHUP, ...) is passed on to the command, and
rollcall exits when it has.

Options:
  -h, --hosts FILE          hosts file: one peer per line, HOST[:PORT];
                            HOST is a DNS name, an IPv4 address or [IPv6];
                            # starts a comment              [ROLLCALL_HOSTS]
  -n, --name NAME           this peer's entry: its whole text, its HOST, or
                            the first label of its HOST when unique
                            (default: this machine's hostname)   [ROLLCALL_NAME]
  -p, --port PORT           port of entries that name none (default 7610)
                                                                 [ROLLCALL_PORT]
  -t, --timeout DURATION    total run time, at most 100 years (default 120s)
                                                              [ROLLCALL_TIMEOUT]
  -i, --interval DURATION   heartbeat interval, from 10ms to 1h (default 2s)
                                                             [ROLLCALL_INTERVAL]
      --barrier             exit 0 as soon as every peer is READY, instead of
                            running until the timeout; a timeout before
                            every peer's READY is heard exits 124
                                                             [ROLLCALL_BARRIER=1]
      --ready-file PATH     create PATH when READY, remove it on exit
                                                           [ROLLCALL_READY_FILE]
      --ready-to WHERE      print READY on stdout or stderr (default stdout)
                                                             [ROLLCALL_READY_TO]
      --output FORMAT       plain (default): READY alone on stdout; json:
                            stdout carries JSON Lines, one object per event
                            (ready, exchanged, suspect, down, up, restarted,
                            left, timeout, exit)           [ROLLCALL_OUTPUT]
      --bind ADDR           local IP or IP:PORT to bind, one socket (default:
                            a socket per address family on this entry's
                            port, on its address if it is one of this
                            machine's, else on every address)    [ROLLCALL_BIND]
      --secret-file FILE    authenticate every datagram with a MAC keyed by
                            the secret in FILE; peers must share it
                                                          [ROLLCALL_SECRET_FILE]
      --exit-on-down        with a COMMAND: when a peer goes down while it
                            runs, send it SIGTERM (SIGKILL 10s later) and
                            exit 3                    [ROLLCALL_EXIT_ON_DOWN=1]
  -d, --debug               log every datagram sent and received
  -q, --quiet               log warnings and errors only
                                [ROLLCALL_LOG=debug|info|quiet|warn]
      --help                print this help
  -V, --version             print the version, commit and build

Durations: 500ms, 2s, 1m30s, 1h.

rollcall probe exits 0 if the ready file exists (this peer is READY) and 1
if not: a readiness probe or healthcheck for an image without a shell. It
reads --ready-file or ROLLCALL_READY_FILE.

Exit status:
    0  READY was reached (the timeout ran out after READY, or --barrier
       completed)
  124  the timeout ran out before READY (with --barrier, before the
       barrier passed); the missing peers are listed
    1  runtime failure
    2  usage or configuration error
  129  stopped by SIGHUP; likewise 130 SIGINT, 131 SIGQUIT, 140 SIGUSR2,
       142 SIGALRM, 143 SIGTERM (128 + the signal; the ready file is
       removed)
With a COMMAND, once it has started:
    N  the command's own exit status
128+n  the command was ended by signal n (143 for SIGTERM)
  127  the command was not found
  126  the command was found but could not be run (not executable)
    3  a peer went down while it ran, under --exit-on-down

SIGUSR1 logs who is missing what, and ends nothing.
";

/// What stdout carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// `READY`, alone on a line.
    #[default]
    Plain,
    /// One JSON object per event.
    Json,
}

/// Where `READY` is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyTo {
    Stdout,
    Stderr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Quiet,
}

/// What to bind: an address whose port comes from our entry, or a whole
/// socket address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    Ip(IpAddr),
    Addr(SocketAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub hosts: PathBuf,
    /// `None`: this machine's hostname.
    pub name: Option<String>,
    pub port: u16,
    pub timeout: Duration,
    pub interval: Duration,
    pub barrier: bool,
    pub ready_file: Option<PathBuf>,
    pub ready_to: ReadyTo,
    pub bind: Option<Bind>,
    pub secret_file: Option<PathBuf>,
    pub log: LogLevel,
    /// What follows `--`: the command run after READY (never empty).
    pub command: Option<Vec<OsString>>,
    /// Stop the command, and exit 3, when a peer goes down while it runs.
    pub exit_on_down: bool,
    /// What stdout carries.
    pub output: Output,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Config),
    /// Is the peer that writes this ready file READY?
    Probe {
        ready_file: PathBuf,
    },
    Help,
    Version,
}

/// A usage error: one line that names the flag or variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> UsageError {
        UsageError(e.to_string())
    }
}

/// The settings that take a value, each with its flag and its variable.
#[derive(Clone, Copy)]
enum Setting {
    Hosts,
    Name,
    Port,
    Timeout,
    Interval,
    Barrier,
    ReadyFile,
    ReadyTo,
    Bind,
    SecretFile,
    Log,
    ExitOnDown,
    Output,
}

impl Setting {
    const ALL: [Setting; 13] = [
        Setting::Hosts,
        Setting::Name,
        Setting::Port,
        Setting::Timeout,
        Setting::Interval,
        Setting::Barrier,
        Setting::ReadyFile,
        Setting::ReadyTo,
        Setting::Bind,
        Setting::SecretFile,
        Setting::Log,
        Setting::ExitOnDown,
        Setting::Output,
    ];

    fn flag(self) -> &'static str {
        match self {
            Setting::Hosts => "--hosts",
            Setting::Name => "--name",
            Setting::Port => "--port",
            Setting::Timeout => "--timeout",
            Setting::Interval => "--interval",
            Setting::Barrier => "--barrier",
            Setting::ReadyFile => "--ready-file",
            Setting::ReadyTo => "--ready-to",
            Setting::Bind => "--bind",
            Setting::SecretFile => "--secret-file",
            Setting::Log => "--debug/--quiet",
            Setting::ExitOnDown => "--exit-on-down",
            Setting::Output => "--output",
        }
    }

    fn var(self) -> &'static str {
        match self {
            Setting::Hosts => "ROLLCALL_HOSTS",
            Setting::Name => "ROLLCALL_NAME",
            Setting::Port => "ROLLCALL_PORT",
            Setting::Timeout => "ROLLCALL_TIMEOUT",
            Setting::Interval => "ROLLCALL_INTERVAL",
            Setting::Barrier => "ROLLCALL_BARRIER",
            Setting::ReadyFile => "ROLLCALL_READY_FILE",
            Setting::ReadyTo => "ROLLCALL_READY_TO",
            Setting::Bind => "ROLLCALL_BIND",
            Setting::SecretFile => "ROLLCALL_SECRET_FILE",
            Setting::Log => "ROLLCALL_LOG",
            Setting::ExitOnDown => "ROLLCALL_EXIT_ON_DOWN",
            Setting::Output => "ROLLCALL_OUTPUT",
        }
    }
}

/// A raw value and where it came from, for error messages.
struct Raw {
    value: OsString,
    from: &'static str,
}

impl Raw {
    fn text(&self) -> Result<&str, UsageError> {
        self.value
            .to_str()
            .ok_or_else(|| UsageError(format!("{}: the value is not valid UTF-8", self.from)))
    }

    fn bad(&self, why: impl fmt::Display) -> UsageError {
        UsageError(format!(
            "invalid value {} for {}: {why}",
            crate::quote(&self.value.to_string_lossy()),
            self.from
        ))
    }

    /// An on/off switch: 1, true, yes, on or 0, false, no, off.
    fn switch(&self) -> Result<bool, UsageError> {
        match self.text()?.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(self.bad("expected 1 or 0")),
        }
    }

    /// A duration from `min` to `max`, both shown in the error.
    fn duration(&self, min: Duration, max: Duration) -> Result<Duration, UsageError> {
        let text = self.text()?.trim();
        if text.starts_with('-') {
            return Err(self.bad("a duration cannot be negative"));
        }
        let d = humantime::parse_duration(text).map_err(|e| {
            self.bad(format_args!(
                "{e}; a duration is written as in 500ms, 2s or 1m30s"
            ))
        })?;
        if d.is_zero() || d < min {
            let least = if min.is_zero() {
                "more than zero".to_string()
            } else {
                format!("at least {}", humantime::format_duration(min))
            };
            return Err(self.bad(format_args!("must be {least}")));
        }
        if d > max {
            return Err(self.bad(format_args!(
                "must be at most {}",
                humantime::format_duration(max)
            )));
        }
        Ok(d)
    }
}

/// Parses `args` (without the program name), falling back on `env` for
/// each setting no flag gave.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Command, UsageError> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "probe") {
        args.next();
        return parse_probe(args, env);
    }
    let mut raw: [Option<Raw>; Setting::ALL.len()] = Default::default();
    let mut command = None;
    let mut parser = lexopt::Parser::from_args(args);
    loop {
        // Everything after `--` is the command, word for word. (lexopt
        // would take the `--` itself and hand the words on as values, which
        // a stray word before it could not be told from.)
        if let Some(mut rest) = parser.try_raw_args()
            && rest.peek().is_some_and(|a| a == "--")
        {
            rest.next();
            let words: Vec<OsString> = rest.collect();
            if words.is_empty() {
                return Err(UsageError(
                    "'--' must be followed by the command to run after READY, as in '-- ./job.sh ARGS'"
                        .into(),
                ));
            }
            command = Some(words);
            break;
        }
        let Some(arg) = parser.next()? else { break };
        let (setting, value) = match arg {
            Short('h') | Long("hosts") => {
                let flag = if arg == Short('h') { "-h" } else { "--hosts" };
                let value = parser.value().map_err(|_| {
                    UsageError(format!(
                        "{flag} takes the hosts file, as in '{flag} hosts.txt'; for help use --help"
                    ))
                })?;
                (Setting::Hosts, value)
            }
            Short('n') | Long("name") => (Setting::Name, parser.value()?),
            Short('p') | Long("port") => (Setting::Port, parser.value()?),
            Short('t') | Long("timeout") => (Setting::Timeout, parser.value()?),
            Short('i') | Long("interval") => (Setting::Interval, parser.value()?),
            Long("barrier") => (Setting::Barrier, "1".into()),
            Long("ready-file") => (Setting::ReadyFile, parser.value()?),
            Long("ready-to") => (Setting::ReadyTo, parser.value()?),
            Long("bind") => (Setting::Bind, parser.value()?),
            Long("secret-file") => (Setting::SecretFile, parser.value()?),
            Long("exit-on-down") => (Setting::ExitOnDown, "1".into()),
            Long("output") => (Setting::Output, parser.value()?),
            Short('d') | Long("debug") => (Setting::Log, "debug".into()),
            Short('q') | Long("quiet") => (Setting::Log, "quiet".into()),
            Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Value(v) => {
                return Err(UsageError(format!(
                    "unexpected argument {}: rollcall takes flags, and the command to run after READY only after '--'; see --help",
                    crate::quote(&v.to_string_lossy())
                )));
            }
            _ => return Err(arg.unexpected().into()),
        };
        let slot = &mut raw[setting as usize];
        if let (Setting::Log, Some(prev)) = (setting, slot.as_ref())
            && prev.value != value
        {
            return Err(UsageError("--debug and --quiet exclude each other".into()));
        }
        *slot = Some(Raw {
            value,
            from: setting.flag(),
        });
    }
    for setting in Setting::ALL {
        let slot = &mut raw[setting as usize];
        if slot.is_none() {
            *slot = env(setting.var())
                .filter(|v| !v.is_empty())
                .map(|value| Raw {
                    value,
                    from: setting.var(),
                });
        }
    }
    let [
        hosts,
        name,
        port,
        timeout,
        interval,
        barrier,
        ready_file,
        ready_to,
        bind,
        secret_file,
        log,
        exit_on_down,
        output,
    ] = raw;

    let hosts = hosts.map(|r| PathBuf::from(r.value)).ok_or_else(|| {
        UsageError("no hosts file: give -h FILE (or set ROLLCALL_HOSTS); see --help".into())
    })?;
    let name = name.map(|r| r.text().map(str::to_string)).transpose()?;
    let port = match port {
        None => DEFAULT_PORT,
        Some(r) => match r.text()?.parse::<u16>() {
            Ok(0) | Err(_) => return Err(r.bad("expected a port from 1 to 65535")),
            Ok(p) => p,
        },
    };
    let timeout = timeout.map_or(Ok(DEFAULT_TIMEOUT), |r| {
        r.duration(Duration::ZERO, MAX_TIMEOUT)
    })?;
    let interval = interval.map_or(Ok(DEFAULT_INTERVAL), |r| {
        r.duration(MIN_INTERVAL, MAX_INTERVAL)
    })?;
    let barrier = barrier.map_or(Ok(false), |r| r.switch())?;
    let exit_on_down = match exit_on_down {
        Some(r) if r.switch()? && command.is_none() => {
            return Err(UsageError(format!(
                "{} needs a command to stop: rollcall -h HOSTS {} -- COMMAND [ARGS...]",
                r.from,
                Setting::ExitOnDown.flag()
            )));
        }
        Some(r) => r.switch()?,
        None => false,
    };
    let ready_file = ready_file.map(|r| PathBuf::from(r.value));
    let ready_to = match ready_to {
        None => ReadyTo::Stdout,
        Some(r) => match r.text()? {
            "stdout" => ReadyTo::Stdout,
            "stderr" => ReadyTo::Stderr,
            _ => return Err(r.bad("expected stdout or stderr")),
        },
    };
    let bind = match bind {
        None => None,
        Some(r) => {
            let text = r.text()?;
            let text = text.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = text.parse::<IpAddr>() {
                Some(Bind::Ip(ip))
            } else {
                let addr = r.text()?.parse::<SocketAddr>().map_err(|_| {
                    r.bad("expected an IP address or IP:PORT, as in 0.0.0.0 or [::1]:7610")
                })?;
                Some(Bind::Addr(addr))
            }
        }
    };
    let secret_file = secret_file.map(|r| PathBuf::from(r.value));
    let output = match output {
        None => Output::Plain,
        Some(r) => match r.text()? {
            "plain" => Output::Plain,
            "json" => Output::Json,
            _ => return Err(r.bad("expected plain or json")),
        },
    };
    let log = match log {
        None => LogLevel::Info,
        Some(r) => match r.text()? {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "quiet" | "warn" => LogLevel::Quiet,
            _ => return Err(r.bad("expected debug, info or quiet")),
        },
    };
    Ok(Command::Run(Config {
        hosts,
        name,
        port,
        timeout,
        interval,
        barrier,
        ready_file,
        ready_to,
        bind,
        secret_file,
        log,
        command,
        exit_on_down,
        output,
    }))
}

fn parse_probe(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Command, UsageError> {
    let mut ready_file = None;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("ready-file") => ready_file = Some(PathBuf::from(parser.value()?)),
            Long("help") => return Ok(Command::Help),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let var = Setting::ReadyFile.var();
    match ready_file.or_else(|| env(var).filter(|v| !v.is_empty()).map(PathBuf::from)) {
        Some(ready_file) => Ok(Command::Probe { ready_file }),
        None => Err(UsageError(format!(
            "probe needs the ready file: give --ready-file PATH or set {var}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let lookup = |k: &str| {
            env.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        };
        match parse(args.iter().map(OsString::from), lookup) {
            Ok(Command::Run(c)) => Ok(c),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&["-h", "hosts.txt"], &[]).unwrap();
        assert_eq!(c.hosts, PathBuf::from("hosts.txt"));
        assert_eq!(c.name, None);
        assert_eq!(c.port, 7610);
        assert_eq!(c.timeout, Duration::from_secs(120));
        assert_eq!(c.interval, Duration::from_secs(2));
        assert!(!c.barrier);
        assert_eq!(c.ready_to, ReadyTo::Stdout);
        assert_eq!(c.bind, None);
        assert_eq!(c.log, LogLevel::Info);
    }

    #[test]
    fn every_flag() {
        let c = run(
            &[
                "--hosts=h",
                "-n",
                "peer2",
                "-p",
                "9000",
                "-t",
                "1m30s",
                "-i",
                "500ms",
                "--barrier",
                "--ready-file",
                "/tmp/r",
                "--ready-to",
                "stderr",
                "--bind",
                "[::1]:7000",
                "-q",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.name.as_deref(), Some("peer2"));
        assert_eq!(c.port, 9000);
        assert_eq!(c.timeout, Duration::from_secs(90));
        assert_eq!(c.interval, Duration::from_millis(500));
        assert!(c.barrier);
        assert_eq!(c.ready_file, Some(PathBuf::from("/tmp/r")));
        assert_eq!(c.ready_to, ReadyTo::Stderr);
        assert_eq!(c.bind, Some(Bind::Addr("[::1]:7000".parse().unwrap())));
        assert_eq!(c.log, LogLevel::Quiet);
        assert_eq!(
            run(&["-h", "h", "--bind", "127.0.0.2"], &[]).unwrap().bind,
            Some(Bind::Ip("127.0.0.2".parse().unwrap()))
        );
    }

    #[test]
    fn environment_fills_in_and_flags_win() {
        let env = [
            ("ROLLCALL_HOSTS", "/etc/h"),
            ("ROLLCALL_NAME", "peer3"),
            ("ROLLCALL_TIMEOUT", "10s"),
            ("ROLLCALL_BARRIER", "true"),
            ("ROLLCALL_LOG", "debug"),
        ];
        let c = run(&[], &env).unwrap();
        assert_eq!(c.hosts, PathBuf::from("/etc/h"));
        assert_eq!(c.name.as_deref(), Some("peer3"));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert!(c.barrier);
        assert_eq!(c.log, LogLevel::Debug);
        let c = run(&["-h", "mine", "-n", "peer1", "-t", "5s", "-q"], &env).unwrap();
        assert_eq!(c.hosts, PathBuf::from("mine"));
        assert_eq!(c.name.as_deref(), Some("peer1"));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.log, LogLevel::Quiet);
    }

    #[test]
    fn durations_are_bounded_and_their_errors_say_how_to_write_them() {
        type Case<'a> = (&'a [&'a str], &'a str);
        let cases: &[Case] = &[
            (&["-t", "-1s"], "a duration cannot be negative"),
            (&["-t", "300000000000y"], "--timeout"),
            (&["-t", "18446744073709551615s"], "must be at most 100years"),
            (&["-t", "101y"], "must be at most 100years"),
            (&["-i", "400000000000y"], "--interval"),
            (&["-i", "2h"], "must be at most 1h"),
            (&["-i", "1ns"], "must be at least 10ms"),
            (&["-i", "9ms"], "must be at least 10ms"),
            (
                &["-t", "soon"],
                "a duration is written as in 500ms, 2s or 1m30s",
            ),
        ];
        for (flags, needle) in cases {
            let args: Vec<&str> = ["-h", "h"].iter().chain(flags.iter()).copied().collect();
            let e = run(&args, &[]).unwrap_err();
            assert!(e.contains(needle), "{flags:?}: {e}");
        }
        let c = run(&["-h", "h", "-i", "10ms", "-t", "100y"], &[]).unwrap();
        assert_eq!(c.interval, MIN_INTERVAL);
        assert_eq!(c.timeout, MAX_TIMEOUT);
        let c = run(&["-h", "h", "-i", "1h", "-t", "1ns"], &[]).unwrap();
        assert_eq!(c.interval, MAX_INTERVAL);
        assert_eq!(c.timeout, Duration::from_nanos(1));
    }

    #[test]
    fn a_stray_word_points_to_help() {
        let e = run(&["help"], &[]).unwrap_err();
        assert!(
            e.contains("unexpected argument 'help'") && e.contains("--help"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_flag_or_variable() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&["-h"], &[], "--help"),
            (&[], &[], "no hosts file"),
            (&["-h", "h", "--frobnicate"], &[], "--frobnicate"),
            (&["-h", "h", "-t", "soon"], &[], "--timeout"),
            (&["-h", "h", "-i", "0s"], &[], "--interval"),
            (&["-h", "h", "-p", "0"], &[], "--port"),
            (&["-h", "h", "-p", "99999"], &[], "--port"),
            (&["-h", "h", "--ready-to", "file"], &[], "--ready-to"),
            (&["-h", "h", "--bind", "here"], &[], "--bind"),
            (&["-h", "h", "-d", "-q"], &[], "exclude"),
            (&["-h", "h", "extra"], &[], "extra"),
            (&["-h", "h", "-t"], &[], "'-t'"),
            (
                &["-h", "h"],
                &[("ROLLCALL_TIMEOUT", "x")],
                "ROLLCALL_TIMEOUT",
            ),
            (
                &["-h", "h"],
                &[("ROLLCALL_BARRIER", "maybe")],
                "ROLLCALL_BARRIER",
            ),
            (&["-h", "h"], &[("ROLLCALL_LOG", "loud")], "ROLLCALL_LOG"),
        ];
        for (args, env, needle) in cases {
            let err = run(args, env).expect_err(&format!("{args:?}"));
            assert!(err.contains(needle), "{args:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn everything_after_the_double_dash_is_the_command_word_for_word() {
        let c = run(&["-h", "h", "--", "sh", "-c", "echo --help"], &[]).unwrap();
        assert_eq!(
            c.command,
            Some(vec!["sh".into(), "-c".into(), "echo --help".into()])
        );
        assert!(!c.exit_on_down);
        // Flags after `--` are the command's, even rollcall's own and `--`.
        let c = run(&["-h", "h", "--", "--barrier", "--", "-t"], &[]).unwrap();
        assert_eq!(
            c.command,
            Some(vec!["--barrier".into(), "--".into(), "-t".into()])
        );
        assert!(!c.barrier);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        // Flags before it still count, in any form.
        let c = run(&["--hosts=h", "-qt", "5s", "--", "./job"], &[]).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.log, LogLevel::Quiet);
        assert_eq!(c.command, Some(vec!["./job".into()]));
        // No command: none.
        assert_eq!(run(&["-h", "h"], &[]).unwrap().command, None);
    }

    #[test]
    fn a_command_word_need_not_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![b'a', 0xff, b'b']);
        let args = [
            "-h".into(),
            "h".into(),
            "--".into(),
            "ls".into(),
            odd.clone(),
        ];
        let Ok(Command::Run(c)) = parse(args, |_| None) else {
            panic!("not a run");
        };
        assert_eq!(c.command, Some(vec!["ls".into(), odd]));
    }

    #[test]
    fn exit_on_down_is_a_switch_of_the_command() {
        let c = run(&["-h", "h", "--exit-on-down", "--", "job"], &[]).unwrap();
        assert!(c.exit_on_down);
        let on = [("ROLLCALL_EXIT_ON_DOWN", "yes")];
        assert!(run(&["-h", "h", "--", "job"], &on).unwrap().exit_on_down);
        let off = [("ROLLCALL_EXIT_ON_DOWN", "0")];
        assert!(!run(&["-h", "h", "--", "job"], &off).unwrap().exit_on_down);
        // Off without a command is no error: there is nothing to stop.
        assert!(!run(&["-h", "h"], &off).unwrap().exit_on_down);
    }

    #[test]
    fn command_errors_name_the_flag_or_variable() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                &["-h", "h", "--exit-on-down"],
                &[],
                &["--exit-on-down", "-- COMMAND"],
            ),
            (
                &["-h", "h"],
                &[("ROLLCALL_EXIT_ON_DOWN", "1")],
                &["ROLLCALL_EXIT_ON_DOWN", "-- COMMAND"],
            ),
            (
                &["-h", "h", "--", "job"],
                &[("ROLLCALL_EXIT_ON_DOWN", "maybe")],
                &["ROLLCALL_EXIT_ON_DOWN", "'maybe'"],
            ),
            (&["-h", "h", "--"], &[], &["'--'", "command"]),
            (
                &["-h", "h", "--exit-on-down", "--"],
                &[],
                &["'--'", "command"],
            ),
            (&["-h", "h", "./job.sh"], &[], &["'./job.sh'", "'--'"]),
            (
                &["-h", "h", "--exit-on-down=1", "--", "job"],
                &[],
                &["--exit-on-down"],
            ),
        ];
        for (args, env, needles) in cases {
            let err = run(args, env).expect_err(&format!("{args:?}"));
            for needle in needles.iter() {
                assert!(err.contains(needle), "{args:?}: {err}");
            }
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn probe_reads_its_flag_or_the_variable() {
        let env = |k: &str| (k == "ROLLCALL_READY_FILE").then(|| OsString::from("/run/r"));
        let none = |_: &str| None;
        let probe = |args: &[&str], env: &dyn Fn(&str) -> Option<OsString>| {
            parse(args.iter().map(OsString::from), env)
        };
        let at = |p: &str| {
            Ok(Command::Probe {
                ready_file: p.into(),
            })
        };
        assert_eq!(probe(&["probe"], &env), at("/run/r"));
        assert_eq!(probe(&["probe", "--ready-file", "/x"], &env), at("/x"));
        assert!(
            probe(&["probe"], &none)
                .unwrap_err()
                .0
                .contains("ROLLCALL_READY_FILE")
        );
        assert!(
            probe(&["probe", "-x"], &env)
                .unwrap_err()
                .0
                .contains("'-x'")
        );
        // Only the first argument is a command.
        assert!(probe(&["-h", "h", "probe"], &env).is_err());
    }

    #[test]
    fn help_and_version() {
        let none = |_: &str| None;
        assert_eq!(parse(["--help".into()], none), Ok(Command::Help));
        assert_eq!(parse(["-V".into()], none), Ok(Command::Version));
        for flag in [
            "--hosts",
            "--name",
            "--port",
            "--timeout",
            "--interval",
            "--barrier",
            "--ready-file",
            "--ready-to",
            "--bind",
            "--secret-file",
            "--debug",
            "--quiet",
            "--version",
            "--exit-on-down",
            "-- COMMAND",
            "ROLLCALL_INDEX",
            "ROLLCALL_SIZE",
            "ROLLCALL_PEERS",
            "124",
            "143",
            "127",
            "126",
        ] {
            assert!(HELP.contains(flag), "help lacks {flag}");
        }
        for s in Setting::ALL {
            assert!(HELP.contains(s.var()), "help lacks {}", s.var());
        }
    }
}
