//! The datagram format: what goes on the wire and nothing else.
//!
//! `encode` and `decode` are total: any byte string decodes to a [`Message`]
//! or a typed [`DecodeError`], never a panic, and nothing here allocates.
//! Whether a well-formed message is *believable* (right hosts list, a real
//! peer, the right address) is the state machine's business, not this one's.
//!
//! Layout of version 1, all integers big-endian, 44 bytes:
//!
//! ```text
//!  offset size field
//!   0      4  magic        "RLCL"
//!   4      1  version      1
//!   5      1  kind         1 heartbeat, 2 acknowledgement
//!   6      1  flags        bit 0 READY, bit 1 DONE; other bits ignored
//!   7      1  reserved     sent as 0, ignored
//!   8      8  hosts        fingerprint of the hosts list
//!  16      2  from         sender's entry id (1-based)
//!  18      2  to           receiver's entry id (1-based)
//!  20      8  incarnation  sender's incarnation
//!  28      8  echo         ack: the incarnation being acknowledged; heartbeat: 0
//!  36      8  seq          heartbeat: sender's sequence; ack: the one acknowledged
//! ```

use std::fmt;

/// The first four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"RLCL";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Length of a version 1 datagram.
pub const LEN: usize = 44;

/// What a datagram asks of its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// "I am here": answer with an acknowledgement.
    Heartbeat,
    /// "I heard your heartbeat `seq` of incarnation `echo`."
    Ack,
}

/// The sender's progress, carried by every datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// The sender has announced READY.
    pub ready: bool,
    /// The sender knows every peer is READY (`--barrier`) and is leaving.
    pub done: bool,
}

impl Flags {
    fn to_byte(self) -> u8 {
        u8::from(self.ready) | (u8::from(self.done) << 1)
    }

    fn from_byte(b: u8) -> Flags {
        Flags {
            ready: b & 1 != 0,
            done: b & 2 != 0,
        }
    }
}

/// One datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub flags: Flags,
    /// Fingerprint of the sender's hosts list.
    pub hosts: u64,
    /// Sender's entry id, 1-based.
    pub from: u16,
    /// Receiver's entry id, 1-based.
    pub to: u16,
    /// Sender's incarnation: new at every process start.
    pub incarnation: u64,
    /// In an acknowledgement, the incarnation of the heartbeat's sender.
    pub echo: u64,
    /// In a heartbeat, its sequence number; in an acknowledgement, the
    /// sequence number of the heartbeat it answers.
    pub seq: u64,
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
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Magic => write!(f, "not a rollcall datagram (bad magic)"),
            DecodeError::Version(v) => {
                write!(f, "protocol version {v}, this build speaks {VERSION}")
            }
            DecodeError::Length(n) => write!(f, "{n} bytes, a datagram has {LEN}"),
            DecodeError::Kind(k) => write!(f, "unknown message kind {k}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Writes `msg` into a fixed-size buffer.
pub fn encode(msg: &Message) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0..4].copy_from_slice(&MAGIC);
    b[4] = VERSION;
    b[5] = match msg.kind {
        Kind::Heartbeat => 1,
        Kind::Ack => 2,
    };
    b[6] = msg.flags.to_byte();
    b[8..16].copy_from_slice(&msg.hosts.to_be_bytes());
    b[16..18].copy_from_slice(&msg.from.to_be_bytes());
    b[18..20].copy_from_slice(&msg.to.to_be_bytes());
    b[20..28].copy_from_slice(&msg.incarnation.to_be_bytes());
    b[28..36].copy_from_slice(&msg.echo.to_be_bytes());
    b[36..44].copy_from_slice(&msg.seq.to_be_bytes());
    b
}

/// Reads a message from `bytes`, whatever they are.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    if bytes.len() < 5 || bytes[0..4] != MAGIC {
        return Err(DecodeError::Magic);
    }
    if bytes[4] != VERSION {
        return Err(DecodeError::Version(bytes[4]));
    }
    let b: &[u8; LEN] = bytes
        .try_into()
        .map_err(|_| DecodeError::Length(bytes.len()))?;
    let kind = match b[5] {
        1 => Kind::Heartbeat,
        2 => Kind::Ack,
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
        hosts: u64_at(8),
        from: u16_at(16),
        to: u16_at(18),
        incarnation: u64_at(20),
        echo: u64_at(28),
        seq: u64_at(36),
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
            },
            hosts: 0x0123_4567_89ab_cdef,
            from: 3,
            to: 65535,
            incarnation: u64::MAX,
            echo: 42,
            seq: 7,
        }
    }

    #[test]
    fn round_trips() {
        for kind in [Kind::Heartbeat, Kind::Ack] {
            for (ready, done) in [(false, false), (true, false), (true, true)] {
                let msg = Message {
                    kind,
                    flags: Flags { ready, done },
                    ..sample()
                };
                assert_eq!(decode(&encode(&msg)), Ok(msg));
            }
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let b = encode(&sample());
        assert_eq!(&b[0..4], b"RLCL");
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 2);
        assert_eq!(b[6], 1);
        assert_eq!(&b[8..16], &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(&b[16..20], &[0, 3, 0xff, 0xff]);
        assert_eq!(&b[36..44], &[0, 0, 0, 0, 0, 0, 0, 7]);
    }

    #[test]
    fn rejects_what_is_not_a_message() {
        let good = encode(&sample());
        assert_eq!(decode(&[]), Err(DecodeError::Magic));
        assert_eq!(decode(b"RLC"), Err(DecodeError::Magic));
        assert_eq!(decode(b"XLCL\x01"), Err(DecodeError::Magic));
        let mut v2 = good;
        v2[4] = 2;
        assert_eq!(decode(&v2), Err(DecodeError::Version(2)));
        assert_eq!(decode(&good[..43]), Err(DecodeError::Length(43)));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(decode(&long), Err(DecodeError::Length(45)));
        let mut kind = good;
        kind[5] = 9;
        assert_eq!(decode(&kind), Err(DecodeError::Kind(9)));
    }

    #[test]
    fn every_prefix_and_every_byte_flip_decodes_or_errs() {
        let good = encode(&sample());
        for n in 0..=good.len() {
            let _ = decode(&good[..n]);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 2, 3, 0x7f, 0xff] {
                let mut b = good;
                b[i] = v;
                let _ = decode(&b);
            }
        }
    }
}
