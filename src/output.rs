//! `--output json`: the events a script acts on, as JSON Lines on stdout,
//! one object per event, written with serde_json.
//!
//! Every object has `event` and `ts` (RFC 3339, UTC, milliseconds); one
//! about a peer has `peer` (its entry as written in the hosts file),
//! `index` (its position there, from 1), `addr` (where it is, or null) and
//! `incarnation` (hexadecimal, as the log writes it, or null). The events:
//!
//! | event        | fields besides those                                  |
//! |--------------|-------------------------------------------------------|
//! | `exchanged`  | `have`, `total`: peers exchanged with, this one included |
//! | `ready`      | `after_ms`, `total`, `sent`, `received`               |
//! | `suspect`    | `silent_ms`                                           |
//! | `down`       | `silent_ms`                                           |
//! | `up`         |                                                       |
//! | `restarted`  |                                                       |
//! | `left`       |                                                       |
//! | `timeout`    | `after_ms`, `barrier`, `total`, `missing`: [{`peer`, `index`, `addr`, `lacks`, `last_heard_ms`}] |
//! | `exit`       | `code`, `reason`                                      |
//!
//! `lacks` lists what keeps a missing peer from counting: `address`,
//! `heartbeat`, `acknowledgement`, `silent`, `left`, `ready` (with
//! `--barrier`: its READY), `hosts list` or `secret` (it runs with another),
//! `source address` (its datagrams come from an address not its own).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::machine::{Event, Mismatch, Missing, PeerRef};

/// The JSON object of `event` at `time`, for the events a script acts on;
/// `None` for the others (they are in the log).
pub fn event(event: &Event, time: SystemTime) -> Option<Value> {
    let (name, mut fields) = match event {
        Event::Exchanged { peer, have, total } => (
            "exchanged",
            with_peer(peer, json!({"have": have, "total": total})),
        ),
        Event::Ready { after, stats } => (
            "ready",
            json!({
                "after_ms": ms(*after),
                "sent": stats.heartbeats + stats.acks + stats.probes,
                "received": stats.received,
            }),
        ),
        Event::Suspect { peer, silent } => (
            "suspect",
            with_peer(peer, json!({"silent_ms": ms(*silent)})),
        ),
        Event::Down { peer, silent } => {
            ("down", with_peer(peer, json!({"silent_ms": ms(*silent)})))
        }
        Event::Up { peer } => ("up", with_peer(peer, json!({}))),
        Event::Restarted { peer } => ("restarted", with_peer(peer, json!({}))),
        Event::Left { peer } => ("left", with_peer(peer, json!({}))),
        Event::TimedOut {
            after,
            total,
            barrier,
            missing,
            ..
        } => (
            "timeout",
            json!({
                "after_ms": ms(*after),
                "barrier": barrier,
                "total": total,
                "missing": missing.iter().map(lacking).collect::<Vec<_>>(),
            }),
        ),
        _ => return None,
    };
    Some(object(name, time, &mut fields))
}

/// The last object of a run: its exit status and why.
pub fn exit(code: u8, reason: &str, time: SystemTime) -> Value {
    object("exit", time, &mut json!({"code": code, "reason": reason}))
}

/// `{"event": name, "ts": ..., fields...}`, in that order.
fn object(name: &str, time: SystemTime, fields: &mut Value) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), name.into());
    m.insert(
        "ts".into(),
        humantime::format_rfc3339_millis(time).to_string().into(),
    );
    if let Value::Object(f) = fields {
        m.append(f);
    }
    Value::Object(m)
}

fn with_peer(peer: &PeerRef, mut fields: Value) -> Value {
    let mut m = Map::new();
    m.insert("peer".into(), peer.name.clone().into());
    m.insert("index".into(), peer.index.into());
    m.insert("addr".into(), addr(peer.addr));
    m.insert(
        "incarnation".into(),
        peer.incarnation
            .map_or(Value::Null, |i| format!("{i:x}").into()),
    );
    if let Value::Object(f) = &mut fields {
        m.append(f);
    }
    Value::Object(m)
}

fn lacking(m: &Missing) -> Value {
    let mut lacks: Vec<&str> = Vec::new();
    if m.addr.is_none() {
        lacks.push("address");
    }
    match m.mismatch {
        Some(Mismatch::HostsList) => lacks.push("hosts list"),
        Some(Mismatch::Secret(_)) => lacks.push("secret"),
        None => {}
    }
    if m.wrong_source.is_some() {
        lacks.push("source address");
    }
    if !m.heartbeat {
        lacks.push("heartbeat");
    }
    if !m.ack {
        lacks.push("acknowledgement");
    }
    if m.left {
        lacks.push("left");
    } else if m.silent {
        lacks.push("silent");
    }
    if m.not_ready {
        lacks.push("ready");
    }
    json!({
        "peer": m.peer,
        "index": m.index,
        "addr": addr(m.addr),
        "lacks": lacks,
        "last_heard_ms": m.last_heard.map(ms),
    })
}

fn addr(a: Option<SocketAddr>) -> Value {
    a.map_or(Value::Null, |a| a.to_string().into())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Stats;
    use std::time::UNIX_EPOCH;

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_764_700_000_123)
    }

    fn peer() -> PeerRef {
        PeerRef {
            name: "peer3".into(),
            index: 3,
            addr: Some("10.0.0.3:7610".parse().unwrap()),
            incarnation: Some(0xabc),
        }
    }

    #[test]
    fn a_peer_event_names_the_peer_four_ways() {
        let v = event(
            &Event::Down {
                peer: peer(),
                silent: Duration::from_millis(2500),
            },
            at(),
        )
        .unwrap();
        assert_eq!(
            v.to_string(),
            r#"{"event":"down","ts":"2025-12-02T18:26:40.123Z","peer":"peer3","index":3,"addr":"10.0.0.3:7610","incarnation":"abc","silent_ms":2500}"#
        );
    }

    #[test]
    fn ready_counts_what_it_took() {
        let stats = Stats {
            heartbeats: 5,
            acks: 1,
            probes: 0,
            received: 4,
            ..Stats::default()
        };
        let v = event(
            &Event::Ready {
                after: Duration::from_millis(41),
                stats,
            },
            at(),
        )
        .unwrap();
        assert_eq!(v["event"], "ready");
        assert_eq!(v["after_ms"], 41);
        assert_eq!(v["sent"], 6);
        assert_eq!(v["received"], 4);
    }

    #[test]
    fn a_timeout_lists_what_each_missing_peer_lacks() {
        let missing = Missing {
            peer: "peer2".into(),
            index: 2,
            addr: Some("10.0.0.2:7610".parse().unwrap()),
            lookup: None,
            heartbeat: true,
            ack: false,
            last_heard: Some(Duration::from_secs(3)),
            silent: true,
            left: false,
            not_ready: false,
            mismatch: None,
            wrong_source: None,
        };
        let v = event(
            &Event::TimedOut {
                after: Duration::from_secs(10),
                total: 3,
                barrier: false,
                missing: vec![missing],
                passed_without_us: None,
            },
            at(),
        )
        .unwrap();
        assert_eq!(v["event"], "timeout");
        assert_eq!(v["missing"][0]["peer"], "peer2");
        assert_eq!(v["missing"][0]["index"], 2);
        assert_eq!(
            v["missing"][0]["lacks"],
            json!(["acknowledgement", "silent"])
        );
        assert_eq!(v["missing"][0]["last_heard_ms"], 3000);
    }

    #[test]
    fn the_exit_says_code_and_reason() {
        let v = exit(124, "timed out after 10s before READY", at());
        assert_eq!(
            v.to_string(),
            r#"{"event":"exit","ts":"2025-12-02T18:26:40.123Z","code":124,"reason":"timed out after 10s before READY"}"#
        );
    }

    #[test]
    fn log_only_events_have_no_object() {
        let e = Event::AllReady {
            linger: Duration::from_secs(1),
        };
        assert!(event(&e, at()).is_none());
    }
}
