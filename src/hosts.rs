//! The hosts file: which peers make up the cluster, and which one we are.
//!
//! Pure: takes text, returns entries or an error naming the line. Reading
//! the file and naming it in messages is the caller's job.
//!
//! Format: one peer per line, `HOST[:PORT]`, where HOST is a DNS name, an
//! IPv4 address or a bracketed IPv6 address (`[::1]:7610`). `#` starts a
//! comment; blank lines are ignored. An entry's id is its position among
//! the entries, starting at 1.

use std::fmt;

use crate::quote;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// At most this many entries: ids travel as 16-bit numbers.
pub const MAX_ENTRIES: usize = u16::MAX as usize;

/// Where a peer lives, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// A DNS name, lowercased; resolved at run time.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// One line of the hosts file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub host: Host,
    pub port: u16,
    /// The entry as written, used to name the peer in messages.
    pub text: String,
    /// 1-based line number in the file.
    pub line: usize,
}

/// A problem with the file's contents; `line` is 1-based, `None` for the
/// file as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: Option<usize>,
    pub message: String,
}

impl ParseError {
    fn at(line: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line: Some(line),
            message: message.into(),
        }
    }
}

/// Parses the whole file. `default_port` applies to entries without one.
pub fn parse(text: &str, default_port: u16) -> Result<Vec<Entry>, ParseError> {
    // Some editors start a UTF-8 file with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries: Vec<Entry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        if content.split_whitespace().count() > 1 {
            return Err(ParseError::at(
                line,
                format!(
                    "expected one HOST[:PORT] per line, found {}",
                    quote(content)
                ),
            ));
        }
        let (host, port) =
            parse_entry(content, default_port).map_err(|m| ParseError::at(line, m))?;
        if let Some(first) = entries.iter().find(|e| e.host == host && e.port == port) {
            return Err(ParseError::at(
                line,
                format!(
                    "duplicate entry {}: line {} is the same peer ({}:{})",
                    quote(content),
                    first.line,
                    host,
                    port
                ),
            ));
        }
        if entries.len() == MAX_ENTRIES {
            return Err(ParseError::at(
                line,
                format!("more than {MAX_ENTRIES} entries"),
            ));
        }
        entries.push(Entry {
            host,
            port,
            text: content.to_string(),
            line,
        });
    }
    if entries.is_empty() {
        return Err(ParseError {
            line: None,
            message: "no entries (one HOST[:PORT] per line)".into(),
        });
    }
    Ok(entries)
}

fn parse_entry(s: &str, default_port: u16) -> Result<(Host, u16), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{}: missing ']' after the IPv6 address", quote(s)))?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("{} is not an IPv6 address", quote(inside)))?;
        let port = match after {
            "" => default_port,
            _ => match after.strip_prefix(':') {
                Some(p) => parse_port(p)?,
                None => return Err(format!("{}: expected ':PORT' after ']'", quote(s))),
            },
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    let (host, port) = match s.split_once(':') {
        None => (s, default_port),
        Some((h, p)) => {
            if p.contains(':') {
                return Err(format!(
                    "{}: an IPv6 address must be in brackets, as in [::1]:7610",
                    quote(s)
                ));
            }
            (h, parse_port(p)?)
        }
    };
    if host.is_empty() {
        return Err(format!("{}: missing host before ':'", quote(s)));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok((Host::Ip(IpAddr::V4(ip)), port));
    }
    check_dns_name(host)?;
    Ok((Host::Name(host.to_ascii_lowercase()), port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("bad port {} (expected 1 to 65535)", quote(p))),
        Ok(n) => Ok(n),
    }
}

fn check_dns_name(host: &str) -> Result<(), String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Err(format!(
            "host name {} is longer than 253 characters",
            quote(host)
        ));
    }
    for label in name.split('.') {
        let ok_chars = label
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars || label.starts_with('-') {
            return Err(format!(
                "{} is not a host name, an IPv4 address or a bracketed IPv6 address",
                quote(host)
            ));
        }
    }
    if name.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return Err(format!("{} is not a valid IPv4 address", quote(host)));
    }
    Ok(())
}

/// A fingerprint of the list that every peer must share: FNV-1a over each
/// entry's host and port in order. Peers whose lists differ (other peers,
/// other order, other default port) see different fingerprints.
pub fn fingerprint(entries: &[Entry]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for e in entries {
        for b in format!("{}:{}\n", e.host, e.port).bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// Why no single entry is ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    NoMatch,
    /// Line numbers of the entries that match.
    Several(Vec<usize>),
}

/// Finds this process's entry: the one whose whole text is `name`, else
/// whose host is `name`, else whose host's first DNS label is `name`. At
/// each step exactly one match wins; several are an error.
pub fn find_self(entries: &[Entry], name: &str) -> Result<usize, NameError> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.as_str();
    let host_text = |e: &Entry| e.host.to_string();
    let tests: [&dyn Fn(&Entry) -> bool; 3] = [
        &|e| e.text.eq_ignore_ascii_case(name),
        &|e| host_text(e) == name || matches!(e.host, Host::Ip(ip) if ip.to_string() == name),
        &|e| match &e.host {
            Host::Name(h) => h.split('.').next() == Some(name),
            Host::Ip(_) => false,
        },
    ];
    for test in tests {
        let found: Vec<usize> = (0..entries.len()).filter(|&i| test(&entries[i])).collect();
        match found.as_slice() {
            [] => continue,
            [one] => return Ok(*one),
            many => {
                return Err(NameError::Several(
                    many.iter().map(|&i| entries[i].line).collect(),
                ));
            }
        }
    }
    Err(NameError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(text: &str) -> Vec<Entry> {
        parse(text, 7610).expect("parses")
    }

    #[test]
    fn parses_names_addresses_ports_comments() {
        let e = hosts(
            "# the cluster\n\npeer1\nPeer2:7001   # second\n  10.0.0.3:9\n[::1]\n[fe80::1]:7002\n",
        );
        let got: Vec<(String, u16, usize)> = e
            .iter()
            .map(|e| (e.host.to_string(), e.port, e.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("peer1".into(), 7610, 3),
                ("peer2".into(), 7001, 4),
                ("10.0.0.3".into(), 9, 5),
                ("[::1]".into(), 7610, 6),
                ("[fe80::1]".into(), 7002, 7),
            ]
        );
        assert_eq!(e[1].text, "Peer2:7001");
    }

    #[test]
    fn bad_lines_name_their_line() {
        let cases = [
            ("a\nb:0\n", 2, "bad port"),
            ("a\nb:x\n", 2, "bad port"),
            ("a\nb:70000\n", 2, "bad port"),
            ("::1\n", 1, "brackets"),
            ("[::1\n", 1, "missing ']'"),
            ("[::1]x\n", 1, "':PORT'"),
            ("[nope]:1\n", 1, "not an IPv6"),
            ("a b\n", 1, "one HOST"),
            (":7000\n", 1, "missing host"),
            ("bad!name\n", 1, "not a host name"),
            ("999.1.1.1\n", 1, "not a valid IPv4"),
            ("-x\n", 1, "not a host name"),
            ("a\n#\nb\nA:7610\n", 4, "duplicate"),
            ("127.0.0.1:5\n127.0.0.1:5\n", 2, "line 1"),
        ];
        for (text, line, needle) in cases {
            let err = parse(text, 7610).expect_err(text);
            assert_eq!(err.line, Some(line), "{text:?}: {err:?}");
            assert!(err.message.contains(needle), "{text:?}: {}", err.message);
        }
        assert_eq!(parse("# only\n\n", 7610).unwrap_err().line, None);
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_invisible_characters_are_shown() {
        let with_bom = parse("\u{feff}127.0.0.1:7001\n127.0.0.1:7002\n", 7610).unwrap();
        assert_eq!(
            with_bom,
            parse("127.0.0.1:7001\n127.0.0.1:7002\n", 7610).unwrap()
        );
        // Anywhere else, it and its kin are errors that show them.
        let cases = [
            ("a\n\u{feff}b\n", "'\\u{feff}b' is not a host name"),
            ("peer\u{200b}1\n", "'peer\\u{200b}1' is not a host name"),
            ("peer\t1:x\n", "one HOST"),
            ("p:7\u{7}\n", "bad port '7\\u{7}'"),
        ];
        for (text, needle) in cases {
            let err = parse(text, 7610).expect_err(text);
            assert!(err.message.contains(needle), "{text:?}: {}", err.message);
        }
    }

    #[test]
    fn fingerprint_follows_the_list() {
        let a = hosts("p1\np2\n");
        assert_eq!(fingerprint(&a), fingerprint(&hosts("# c\nP1:7610\np2\n")));
        assert_ne!(fingerprint(&a), fingerprint(&hosts("p2\np1\n")));
        assert_ne!(fingerprint(&a), fingerprint(&hosts("p1\np2\np3\n")));
        assert_ne!(fingerprint(&a), fingerprint(&parse("p1\np2\n", 1).unwrap()));
    }

    #[test]
    fn finds_self_by_text_host_or_label() {
        let e = hosts("rc-0.rc\nrc-1.rc\n127.0.0.1:7001\n127.0.0.1:7002\n[::1]:7003\nx.a\nx.b\n");
        assert_eq!(find_self(&e, "rc-1"), Ok(1));
        assert_eq!(find_self(&e, "rc-0.rc"), Ok(0));
        assert_eq!(find_self(&e, "RC-0.RC"), Ok(0));
        assert_eq!(find_self(&e, "127.0.0.1:7002"), Ok(3));
        assert_eq!(find_self(&e, "::1"), Ok(4));
        assert_eq!(find_self(&e, "[::1]:7003"), Ok(4));
        assert_eq!(
            find_self(&e, "127.0.0.1"),
            Err(NameError::Several(vec![3, 4]))
        );
        assert_eq!(find_self(&e, "x"), Err(NameError::Several(vec![6, 7])));
        assert_eq!(find_self(&e, "x.b"), Ok(6));
        assert_eq!(find_self(&e, "nobody"), Err(NameError::NoMatch));
    }
}
