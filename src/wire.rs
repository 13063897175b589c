//! The datagram format: what goes on the wire and nothing else.
//!
//! `encode` and `decode` are total: any byte string decodes to a [`Message`]
//! or a typed [`DecodeError`], never a panic, and nothing here allocates.
//! Whether a well-formed message is *believable* (right hosts list, a real
//! peer, the right address) is the state machine's business, not this one's.
//!
//! With a shared secret, every datagram carries a message authentication
//! code: a BLAKE3 keyed hash of its first 52 bytes, truncated to 16 bytes
//! and appended, and byte 7 says so. Verifying it is part of decoding.
//!
//! A heartbeat carries the acknowledgement of the receiver's latest
//! heartbeat when there is one to give, so that a pair that has exchanged
//! sends one datagram each way per interval, and a late starter's exchange
//! takes three datagrams: its heartbeat, a heartbeat carrying the
//! acknowledgement, and the acknowledgement of that.
//!
//! Layout of version 2, all integers big-endian, 52 bytes (68 with a MAC):
//!
//! ```text
//!  offset size field
//!   0      4  magic        "RLCL"
//!   4      1  version      2
//!   5      1  kind         1 heartbeat, 2 acknowledgement, 3 stale,
//!                          4 leave, 5 probe request, 6 probe reply
//!   6      1  flags        bit 0 READY, bit 1 DONE, bit 2 BARRIER (the sender
//!                          waits for every peer's READY), bit 3 ASK (answer
//!                          this heartbeat now); other bits ignored
//!   7      1  auth         0 none, 1 BLAKE3 MAC in bytes 52..68
//!   8      8  hosts        fingerprint of the hosts list
//!  16      2  from         sender's entry id (1-based)
//!  18      2  to           receiver's entry id (1-based)
//!  20      8  incarnation  sender's incarnation
//!  28      8  seq          heartbeat, leave, probe request and reply:
//!                          sender's sequence; otherwise 0
//!  36      8  echo         the receiver's incarnation being acknowledged, 0
//!                          for none (a heartbeat may carry one); stale: the
//!                          receiver's incarnation the sender knows; probe
//!                          request and reply: the probed peer's entry id
//!  44      8  acked        the receiver's sequence acknowledged (stale:
//!                          answered; probe reply: the request answered)
//!  52     16  mac          with auth 1: keyed BLAKE3 of bytes 0..52, truncated
//! ```

use std::fmt;

/// The first four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"RLCL";
/// The protocol version this build speaks.
pub const VERSION: u8 = 2;
/// Length of a version 2 datagram without a MAC.
pub const LEN: usize = 52;
/// Length of the MAC.
pub const MAC_LEN: usize = 16;
/// Length of a version 2 datagram with a MAC: the largest we send.
pub const MAX_LEN: usize = LEN + MAC_LEN;

/// What the `auth` byte says.
const AUTH_NONE: u8 = 0;
const AUTH_BLAKE3: u8 = 1;

/// The key every datagram's MAC is computed with, derived from the shared
/// secret.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    /// Derives the MAC key from the secret's bytes, so that the secret
    /// itself is never used as a key for anything else.
    pub fn from_secret(secret: &[u8]) -> Key {
        Key(blake3::derive_key("rollcall 2026-11 datagram MAC", secret))
    }

    fn mac(&self, bytes: &[u8]) -> [u8; MAC_LEN] {
        let hash = blake3::keyed_hash(&self.0, bytes);
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&hash.as_bytes()[..MAC_LEN]);
        mac
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// An encoded datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    buf: [u8; MAX_LEN],
    len: usize,
}

impl Datagram {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What a datagram asks of its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// "I am here", and perhaps "I heard your heartbeat `acked` of
    /// incarnation `echo`"; with `ask`, "answer now".
    Heartbeat,
    /// "I heard your heartbeat `acked` of incarnation `echo`."
    Ack,
    /// "Your heartbeat `acked` comes from an incarnation older than `echo`,
    /// which I know of your entry": a restarted peer whose clock is behind
    /// learns which incarnation to take.
    Stale,
    /// "I am leaving": acknowledged like a heartbeat.
    Leave,
    /// "Ask peer `echo` for me, and tell me if it answers" (SWIM's
    /// ping-req): one lossy link does not condemn a peer.
    ProbeRequest,
    /// "Peer `echo` answered me after your request `acked`."
    ProbeReply,
}

impl Kind {
    /// Every kind, in wire order.
    pub const ALL: [Kind; 6] = [
        Kind::Heartbeat,
        Kind::Ack,
        Kind::Stale,
        Kind::Leave,
        Kind::ProbeRequest,
        Kind::ProbeReply,
    ];
}

/// The sender's progress, carried by every datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// The sender has announced READY.
    pub ready: bool,
    /// The sender knows every peer is READY (`--barrier`) and is leaving.
    pub done: bool,
    /// The sender runs with `--barrier`: it waits for every peer's READY,
    /// so a change of flags is news to it at once.
    pub barrier: bool,
}

impl Flags {
    fn to_byte(self) -> u8 {
        u8::from(self.ready) | (u8::from(self.done) << 1) | (u8::from(self.barrier) << 2)
    }

    fn from_byte(b: u8) -> Flags {
        Flags {
            ready: b & 1 != 0,
            done: b & 2 != 0,
            barrier: b & 4 != 0,
        }
    }
}

/// Bit 3 of the flags byte: the heartbeat asks for an answer now.
const ASK: u8 = 8;

/// One datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub flags: Flags,
    /// A heartbeat the sender awaits an acknowledgement of: answer now,
    /// rather than with the next heartbeat due.
    pub ask: bool,
    /// Fingerprint of the sender's hosts list.
    pub hosts: u64,
    /// Sender's entry id, 1-based.
    pub from: u16,
    /// Receiver's entry id, 1-based.
    pub to: u16,
    /// Sender's incarnation: new at every process start.
    pub incarnation: u64,
    /// In a heartbeat, its sequence number; otherwise 0.
    pub seq: u64,
    /// The receiver's incarnation whose heartbeat `acked` is acknowledged
    /// (0: no acknowledgement); in a stale notice, the receiver's
    /// incarnation the sender knows.
    pub echo: u64,
    /// The sequence number of the receiver's heartbeat acknowledged, or
    /// answered by a stale notice.
    pub acked: u64,
}

impl Message {
    /// The acknowledgement this message carries, as (incarnation, seq).
    pub fn ack(&self) -> Option<(u64, u64)> {
        match self.kind {
            Kind::Ack => Some((self.echo, self.acked)),
            Kind::Heartbeat | Kind::Leave if self.echo != 0 => Some((self.echo, self.acked)),
            _ => None,
        }
    }
}

/// Why bytes are not a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a rollcall datagram at all.
    Magic,
    /// A rollcall datagram of a version this build does not speak.
    Version(u8),
    /// Shorter or longer than its version says.
    Length(usize),
    /// An unknown message kind.
    Kind(u8),
    /// No MAC, and this peer requires one.
    Unauthenticated,
    /// A MAC, and this peer has no secret to check it with.
    NoSecret,
    /// A MAC that does not verify: another secret, or forged.
    BadMac,
    /// An unknown authentication scheme.
    Auth(u8),
}

impl DecodeError {
    /// The datagram may be sound, but its authentication is not ours.
    pub fn is_auth(self) -> bool {
        matches!(
            self,
            DecodeError::Unauthenticated | DecodeError::NoSecret | DecodeError::BadMac
        )
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Magic => write!(f, "not a rollcall datagram (bad magic)"),
            DecodeError::Version(v) => {
                write!(f, "protocol version {v}, this build speaks {VERSION}")
            }
            DecodeError::Length(n) => {
                write!(f, "{n} bytes, a datagram has {LEN} ({MAX_LEN} with a MAC)")
            }
            DecodeError::Kind(k) => write!(f, "unknown message kind {k}"),
            DecodeError::Unauthenticated => write!(f, "no MAC, and a secret is required"),
            DecodeError::NoSecret => write!(f, "a MAC, and this peer has no secret"),
            DecodeError::BadMac => write!(f, "MAC does not verify"),
            DecodeError::Auth(a) => write!(f, "unknown authentication scheme {a}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Writes `msg`, with a MAC when there is a key.
pub fn encode(msg: &Message, key: Option<&Key>) -> Datagram {
    let mut b = [0u8; MAX_LEN];
    b[0..4].copy_from_slice(&MAGIC);
    b[4] = VERSION;
    b[5] = match msg.kind {
        Kind::Heartbeat => 1,
        Kind::Ack => 2,
        Kind::Stale => 3,
        Kind::Leave => 4,
        Kind::ProbeRequest => 5,
        Kind::ProbeReply => 6,
    };
    b[6] = msg.flags.to_byte() | if msg.ask { ASK } else { 0 };
    b[8..16].copy_from_slice(&msg.hosts.to_be_bytes());
    b[16..18].copy_from_slice(&msg.from.to_be_bytes());
    b[18..20].copy_from_slice(&msg.to.to_be_bytes());
    b[20..28].copy_from_slice(&msg.incarnation.to_be_bytes());
    b[28..36].copy_from_slice(&msg.seq.to_be_bytes());
    b[36..44].copy_from_slice(&msg.echo.to_be_bytes());
    b[44..52].copy_from_slice(&msg.acked.to_be_bytes());
    let Some(key) = key else {
        return Datagram { buf: b, len: LEN };
    };
    b[7] = AUTH_BLAKE3;
    let mac = key.mac(&b[..LEN]);
    b[LEN..].copy_from_slice(&mac);
    Datagram {
        buf: b,
        len: MAX_LEN,
    }
}

/// Reads a message from `bytes`, whatever they are. With a key, only a
/// datagram whose MAC verifies is a message.
pub fn decode(bytes: &[u8], key: Option<&Key>) -> Result<Message, DecodeError> {
    if bytes.len() < 5 || bytes[0..4] != MAGIC {
        return Err(DecodeError::Magic);
    }
    if bytes[4] != VERSION {
        return Err(DecodeError::Version(bytes[4]));
    }
    let auth = if bytes.len() >= LEN {
        bytes[7]
    } else {
        AUTH_NONE
    };
    let expected = match auth {
        AUTH_NONE => LEN,
        AUTH_BLAKE3 => MAX_LEN,
        other => return Err(DecodeError::Auth(other)),
    };
    if bytes.len() != expected {
        return Err(DecodeError::Length(bytes.len()));
    }
    let (b, mac) = bytes.split_at(LEN);
    match (key, auth) {
        (None, AUTH_NONE) => {}
        (None, _) => return Err(DecodeError::NoSecret),
        (Some(_), AUTH_NONE) => return Err(DecodeError::Unauthenticated),
        (Some(key), _) => {
            // Constant time: every byte is compared whatever the first
            // difference.
            let diff = key
                .mac(b)
                .iter()
                .zip(mac)
                .fold(0u8, |acc, (x, y)| acc | (x ^ y));
            if diff != 0 {
                return Err(DecodeError::BadMac);
            }
        }
    }
    let kind = match b[5] {
        1 => Kind::Heartbeat,
        2 => Kind::Ack,
        3 => Kind::Stale,
        4 => Kind::Leave,
        5 => Kind::ProbeRequest,
        6 => Kind::ProbeReply,
        k => return Err(DecodeError::Kind(k)),
    };
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let u64_at = |i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i..i + 8]);
        u64::from_be_bytes(x)
    };
    Ok(Message {
        kind,
        flags: Flags::from_byte(b[6]),
        ask: b[6] & ASK != 0,
        hosts: u64_at(8),
        from: u16_at(16),
        to: u16_at(18),
        incarnation: u64_at(20),
        seq: u64_at(28),
        echo: u64_at(36),
        acked: u64_at(44),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message {
            kind: Kind::Ack,
            flags: Flags {
                ready: true,
                done: false,
                barrier: true,
            },
            ask: false,
            hosts: 0x0123_4567_89ab_cdef,
            from: 3,
            to: 65535,
            incarnation: u64::MAX,
            seq: 0,
            echo: 42,
            acked: 7,
        }
    }

    #[test]
    fn round_trips() {
        for kind in Kind::ALL {
            for bits in 0..16u8 {
                let msg = Message {
                    kind,
                    flags: Flags {
                        ready: bits & 1 != 0,
                        done: bits & 2 != 0,
                        barrier: bits & 4 != 0,
                    },
                    ask: bits & 8 != 0,
                    seq: u64::from(bits) << 40,
                    ..sample()
                };
                assert_eq!(decode(encode(&msg, None).as_bytes(), None), Ok(msg));
            }
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let msg = Message {
            kind: Kind::Heartbeat,
            ask: true,
            seq: 0x0102,
            ..sample()
        };
        let d = encode(&msg, None);
        let b = d.as_bytes();
        assert_eq!(b.len(), 52);
        assert_eq!(&b[0..4], b"RLCL");
        assert_eq!(b[4], 2);
        assert_eq!(b[5], 1);
        assert_eq!(b[6], 1 | 4 | 8);
        assert_eq!(b[7], 0);
        assert_eq!(&b[8..16], &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(&b[16..20], &[0, 3, 0xff, 0xff]);
        assert_eq!(&b[20..28], &[0xff; 8]);
        assert_eq!(&b[28..36], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&b[36..44], &[0, 0, 0, 0, 0, 0, 0, 42]);
        assert_eq!(&b[44..52], &[0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(msg.ack(), Some((42, 7)));
        let plain = Message { echo: 0, ..msg };
        assert_eq!(plain.ack(), None);
        let stale = Message {
            kind: Kind::Stale,
            ..msg
        };
        assert_eq!(stale.ack(), None);
    }

    #[test]
    fn rejects_what_is_not_a_message() {
        let d = encode(&sample(), None);
        let good: [u8; LEN] = d.as_bytes().try_into().unwrap();
        let decode = |b: &[u8]| decode(b, None);
        assert_eq!(decode(&[]), Err(DecodeError::Magic));
        assert_eq!(decode(b"RLC"), Err(DecodeError::Magic));
        assert_eq!(decode(b"XLCL\x01"), Err(DecodeError::Magic));
        let mut v1 = good;
        v1[4] = 1;
        assert_eq!(decode(&v1), Err(DecodeError::Version(1)));
        assert_eq!(decode(&good[..51]), Err(DecodeError::Length(51)));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(decode(&long), Err(DecodeError::Length(53)));
        let mut kind = good;
        kind[5] = 9;
        assert_eq!(decode(&kind), Err(DecodeError::Kind(9)));
    }

    #[test]
    fn every_prefix_and_every_byte_flip_decodes_or_errs() {
        let key = Key::from_secret(b"s");
        for k in [None, Some(&key)] {
            for with in [None, Some(&key)] {
                let d = encode(&sample(), k);
                let good = d.as_bytes();
                for n in 0..=good.len() {
                    let _ = decode(&good[..n], with);
                }
                for i in 0..good.len() {
                    for v in [0u8, 1, 2, 3, 0x7f, 0xff] {
                        let mut b = good.to_vec();
                        b[i] = v;
                        let _ = decode(&b, with);
                    }
                }
            }
        }
    }

    #[test]
    fn a_mac_binds_every_byte_to_the_secret() {
        let key = Key::from_secret(b"correct horse");
        let other = Key::from_secret(b"battery staple");
        let msg = sample();
        let d = encode(&msg, Some(&key));
        assert_eq!(d.as_bytes().len(), MAX_LEN);
        assert_eq!(d.as_bytes()[7], 1);
        assert_eq!(decode(d.as_bytes(), Some(&key)), Ok(msg));
        assert_eq!(decode(d.as_bytes(), Some(&other)), Err(DecodeError::BadMac));
        assert_eq!(decode(d.as_bytes(), None), Err(DecodeError::NoSecret));
        let plain = encode(&msg, None);
        assert_eq!(
            decode(plain.as_bytes(), Some(&key)),
            Err(DecodeError::Unauthenticated)
        );
        for i in 0..MAX_LEN {
            if i == 7 {
                continue;
            }
            let mut b = d.as_bytes().to_vec();
            b[i] ^= 0x01;
            assert!(decode(&b, Some(&key)).is_err(), "flipped byte {i} passed");
        }
        // Stripping the MAC and clearing the flag does not pass either.
        let mut stripped = d.as_bytes()[..LEN].to_vec();
        stripped[7] = 0;
        assert_eq!(
            decode(&stripped, Some(&key)),
            Err(DecodeError::Unauthenticated)
        );
    }
}
