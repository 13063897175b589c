//! `--output json`: every line a real run writes on stdout parses back as
//! one JSON object of the README's schema.

mod common;

use common::*;
use serde_json::Value;

/// Parses every stdout line of `p`; panics on any that is not an object
/// with `event` and an RFC 3339 UTC `ts` with milliseconds.
fn events(p: &mut Peer) -> Vec<Value> {
    p.stdout_lines()
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", p.label));
            assert!(v["event"].is_string(), "no event: {l}");
            let ts = v["ts"].as_str().unwrap_or_else(|| panic!("no ts: {l}"));
            // 2026-12-02T19:05:22.259Z
            let b = ts.as_bytes();
            assert!(
                ts.len() == 24 && b[10] == b'T' && b[19] == b'.' && ts.ends_with('Z'),
                "ts is not RFC 3339 UTC with milliseconds: {l}"
            );
            v
        })
        .collect()
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|v| v["event"] == name).collect()
}

#[test]
fn a_json_run_is_one_object_per_event() {
    let dir = TestDir::new("json_run");
    let e = entries(56, 3);
    let hosts = dir.hosts("hosts", &e);
    let mut peers = start_peers(&hosts, &e, 0..3, "20s", &["--output", "json"]);
    let until = deadline(WAIT);
    for p in peers.iter_mut() {
        p.expect_line(
            Stream::Stdout,
            "ready",
            |l| l.contains(r#""event":"ready""#),
            until,
        );
    }
    // Peer 3 dies: the others report it suspect, then down.
    peers[2].kill_now();
    for p in peers[..2].iter_mut() {
        p.expect_line(
            Stream::Stdout,
            "down",
            |l| l.contains(r#""event":"down""#),
            deadline(WAIT),
        );
        p.signal("TERM");
        p.expect_exit(143, deadline(WAIT));
    }
    for (k, p) in peers[..2].iter_mut().enumerate() {
        let ev = events(p);
        let exchanged = named(&ev, "exchanged");
        assert_eq!(exchanged.len(), 2, "{}: {ev:?}", p.label);
        let mut seen: Vec<u64> = exchanged
            .iter()
            .map(|v| v["index"].as_u64().unwrap())
            .collect();
        seen.sort();
        let others: Vec<u64> = (1..=3).filter(|&i| i != k as u64 + 1).collect();
        assert_eq!(seen, others, "{}", p.label);
        for x in &exchanged {
            let i = x["index"].as_u64().unwrap() as usize;
            assert_eq!(x["peer"], e[i - 1].as_str());
            assert_eq!(x["addr"], e[i - 1].as_str());
            assert!(x["incarnation"].is_string());
            assert_eq!(x["total"], 3);
        }
        assert_eq!(named(&ev, "ready").len(), 1, "{ev:?}");
        let down = named(&ev, "down");
        assert_eq!(down.len(), 1, "{ev:?}");
        assert_eq!(down[0]["peer"], e[2].as_str());
        assert_eq!(down[0]["index"], 3);
        assert!(down[0]["silent_ms"].as_u64().is_some());
        let order: Vec<&str> = ev.iter().map(|v| v["event"].as_str().unwrap()).collect();
        let suspect = order.iter().position(|&n| n == "suspect").expect("suspect");
        let down_at = order.iter().position(|&n| n == "down").unwrap();
        assert!(suspect < down_at, "{order:?}");
        let last = ev.last().unwrap();
        assert_eq!(last["event"], "exit", "{order:?}");
        assert_eq!(last["code"], 143);
        assert!(last["reason"].as_str().unwrap().contains("SIGTERM"));
        assert!(!p.stdout_lines().contains(&"READY".to_string()));
    }
}

#[test]
fn a_json_timeout_lists_what_each_missing_peer_lacks() {
    let dir = TestDir::new("json_timeout");
    let e = entries(57, 2);
    let hosts = dir.hosts("hosts", &e);
    let mut p = start_peers(&hosts, &e, 0..1, "1s", &["--output", "json"]).remove(0);
    p.expect_exit(124, deadline(WAIT));
    let ev = events(&mut p);
    let timeout = named(&ev, "timeout");
    assert_eq!(timeout.len(), 1, "{ev:?}");
    let missing = timeout[0]["missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0]["peer"], e[1].as_str());
    assert_eq!(missing[0]["index"], 2);
    let lacks: Vec<&str> = missing[0]["lacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(lacks, ["heartbeat", "acknowledgement"]);
    assert!(missing[0]["last_heard_ms"].is_null());
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "exit");
    assert_eq!(last["code"], 124);
}
