//! Property tests of everything that reads input from outside: the
//! datagram decoder and the hosts-file parser never panic, whatever they
//! are given, and what is encoded or written decodes or parses back; no
//! duration the command line accepts makes the machine panic.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rollcall::cli::{self, Command};
use rollcall::hosts;
use rollcall::machine::{Action, Input, Node, Params};
use rollcall::wire::{self, Flags, Key, Kind, Message};

/// Parses `-t TIMEOUT -i INTERVAL` as the command line would, then runs a
/// two-peer node with it through start, an exchange and every deadline up
/// to its exit, at the far end of time if need be.
fn run_with(timeout: &str, interval: &str, barrier: bool) -> Result<(), TestCaseError> {
    let args = ["-h", "h", "-t", timeout, "-i", interval];
    let config = match cli::parse(args.iter().map(OsString::from), |_| None) {
        Ok(Command::Run(c)) => c,
        // Refused with a message: nothing to run.
        Err(_) => return Ok(()),
        Ok(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
    };
    let entries = hosts::parse("127.0.0.1:7001\n127.0.0.1:7002\n", 7610).unwrap();
    let fp = hosts::fingerprint(&entries);
    let params = Params {
        interval: config.interval,
        timeout: config.timeout,
        barrier,
        authenticated: false,
        job: None,
    };
    let mut node = Node::new(&entries, 0, fp, 5, 9, params);
    let t0 = Instant::now();
    let mut out = Vec::new();
    node.transition(Input::Start, t0, &mut out);
    let peer = "127.0.0.1:7002".parse().unwrap();
    let heartbeat = Message {
        kind: Kind::Heartbeat,
        flags: Flags {
            ready: true,
            done: false,
            barrier,
        },
        ask: true,
        hosts: fp,
        from: 2,
        to: 1,
        incarnation: 77,
        seq: 1,
        echo: 0,
        acked: 1,
    };
    let ack = Message {
        kind: Kind::Ack,
        echo: 5,
        ..heartbeat
    };
    for m in [heartbeat, ack] {
        node.transition(
            Input::Datagram {
                from: peer,
                message: Ok(m),
                arrived: t0,
            },
            t0,
            &mut out,
        );
    }
    let mut now = t0;
    for _ in 0..10_000 {
        if node.finished() {
            return Ok(());
        }
        let Some(next) = node.next_deadline() else {
            break;
        };
        now = now.max(next);
        node.transition(Input::Tick, now, &mut out);
        out.retain(|a| !matches!(a, Action::Send { .. }));
    }
    // A timeout of a century at the shortest interval takes more steps
    // than are worth running: jump to its end.
    node.transition(Input::Tick, t0 + config.timeout, &mut out);
    prop_assert!(
        node.finished(),
        "{timeout} / {interval}: not finished at the timeout"
    );
    Ok(())
}

/// Durations as a user might write them, in range or not.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..u64::MAX).prop_map(|n| format!("{n}ns")),
        (0u64..u64::MAX).prop_map(|n| format!("{n}s")),
        (0u64..10_000_000_000).prop_map(|n| format!("{n}y")),
        (0u64..200).prop_map(|n| format!("{n}y")),
        (0u64..100_000).prop_map(|n| format!("{n}ms")),
        (0u64..MAX_SECS)
            .prop_map(|s| humantime::format_duration(Duration::from_secs(s)).to_string()),
        Just("100y".to_string()),
        Just("10ms".to_string()),
        Just("1h".to_string()),
    ]
}

const MAX_SECS: u64 = 100 * 31_557_600;

fn message() -> impl Strategy<Value = Message> {
    (
        0..6u8,
        any::<(bool, bool, bool, bool)>(),
        any::<u64>(),
        any::<(u16, u16)>(),
        any::<(u64, u64, u64, u64)>(),
    )
        .prop_map(
            |(
                kind,
                (ready, done, barrier, ask),
                hosts,
                (from, to),
                (incarnation, seq, echo, acked),
            )| {
                Message {
                    kind: Kind::ALL[usize::from(kind)],
                    flags: Flags {
                        ready,
                        done,
                        barrier,
                    },
                    ask,
                    hosts,
                    from,
                    to,
                    incarnation,
                    seq,
                    echo,
                    acked,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_accepted_duration_makes_the_machine_panic(
        timeout in duration_text(),
        interval in duration_text(),
        barrier in any::<bool>(),
    ) {
        run_with(&timeout, &interval, barrier)?;
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let key = Key::from_secret(b"k");
        let _ = wire::decode(&bytes, None);
        let _ = wire::decode(&bytes, Some(&key));
    }

    #[test]
    fn decode_never_panics_near_a_real_datagram(
        msg in message(),
        keyed in any::<bool>(),
        flips in proptest::collection::vec((0usize..60, any::<u8>()), 0..4),
        cut in 0usize..=60,
    ) {
        let key = Key::from_secret(b"k");
        let key = keyed.then_some(&key);
        let mut bytes = wire::encode(&msg, key).as_bytes().to_vec();
        for (i, v) in flips {
            if i < bytes.len() {
                bytes[i] = v;
            }
        }
        bytes.truncate(cut);
        let _ = wire::decode(&bytes, key);
    }

    #[test]
    fn encode_then_decode_gives_the_message_back(msg in message(), secret in "[a-z]{1,20}") {
        prop_assert_eq!(wire::decode(wire::encode(&msg, None).as_bytes(), None), Ok(msg));
        let key = Key::from_secret(secret.as_bytes());
        prop_assert_eq!(wire::decode(wire::encode(&msg, Some(&key)).as_bytes(), Some(&key)), Ok(msg));
    }

    #[test]
    fn the_hosts_parser_never_panics(text in "\\PC{0,300}", port in any::<u16>()) {
        let _ = hosts::parse(&text, port);
    }

    #[test]
    fn the_hosts_parser_never_panics_on_near_hosts_files(
        lines in proptest::collection::vec("[a-z0-9.:\\[\\]#_ -]{0,30}", 0..20),
    ) {
        let text = lines.join("\n");
        if let Ok(entries) = hosts::parse(&text, 7610) {
            prop_assert!(!entries.is_empty());
            let _ = hosts::find_self(&entries, &entries[0].text);
        }
    }

    #[test]
    fn a_written_hosts_file_parses_back(
        names in proptest::collection::btree_set("[a-z][a-z0-9-]{0,10}", 1..20),
        ports in proptest::collection::vec(1u16..=65535, 20),
    ) {
        let entries: Vec<String> = names
            .iter()
            .zip(&ports)
            .map(|(n, p)| format!("{n}:{p}"))
            .collect();
        let parsed = hosts::parse(&entries.join("\n"), 7610).unwrap();
        let texts: Vec<&str> = parsed.iter().map(|e| e.text.as_str()).collect();
        prop_assert_eq!(texts, entries.iter().map(String::as_str).collect::<Vec<_>>());
        for (i, e) in parsed.iter().enumerate() {
            prop_assert_eq!(hosts::find_self(&parsed, &e.text), Ok(i));
        }
    }
}
