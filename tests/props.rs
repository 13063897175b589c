//! Property tests of everything that reads input from outside: the
//! datagram decoder and the hosts-file parser never panic, whatever they
//! are given, and what is encoded or written decodes or parses back.

use proptest::prelude::*;
use rollcall::hosts;
use rollcall::wire::{self, Flags, Key, Kind, Message};

fn message() -> impl Strategy<Value = Message> {
    (
        any::<bool>(),
        any::<(bool, bool)>(),
        any::<u64>(),
        any::<(u16, u16)>(),
        any::<(u64, u64, u64)>(),
    )
        .prop_map(
            |(hb, (ready, done), hosts, (from, to), (incarnation, echo, seq))| Message {
                kind: if hb { Kind::Heartbeat } else { Kind::Ack },
                flags: Flags { ready, done },
                hosts,
                from,
                to,
                incarnation,
                echo,
                seq,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

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
