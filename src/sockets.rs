//! The UDP sockets: one per address family, bound on this entry's port.
//!
//! A peer must reach every other peer from the address the hosts file
//! lists for it, or the receiver cannot tell who it is. One dual-stack
//! socket answers an IPv4 peer from whichever local address the kernel
//! picks, so by default there is a socket per family, each bound to this
//! entry's own address when the entry is an address of that family on
//! this machine, and to every address otherwise. A peer of the other
//! family is reached from this host's address in that family, which the
//! machine accepts on the listed port (see `Node::believes`).

use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::Bind;
use crate::hosts::{Entry, Host};

/// Receive buffer asked for per peer: when a peer starts, every other peer
/// answers it at once, and on loopback each small datagram costs about a
/// kilobyte of buffer accounting; room for four each.
const BUFFER_PER_PEER: usize = 4096;

/// The sockets of one process: at least one of the two.
#[derive(Debug)]
pub struct Sockets {
    pub v4: Option<UdpSocket>,
    /// With `--bind ::` this socket is dual-stack and also serves IPv4
    /// (`v4` is then `None`).
    pub v6: Option<UdpSocket>,
}

/// The receive buffer a cluster of `peers` wants, and what the system
/// gave, when it gave less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capped {
    pub wanted: usize,
    pub got: usize,
}

impl Sockets {
    /// Asks for a receive buffer of room for `peers` answering at once,
    /// never less than the system's default. Says when the system caps it
    /// lower (`net.core.rmem_max`): then datagrams may be lost to a burst.
    pub fn size_buffers(&self, peers: usize) -> Option<Capped> {
        let wanted = peers.saturating_mul(BUFFER_PER_PEER);
        let mut capped = None;
        for socket in [&self.v4, &self.v6].into_iter().flatten() {
            let s = socket2::SockRef::from(socket);
            let before = s.recv_buffer_size().unwrap_or(0);
            if before >= wanted {
                continue;
            }
            // The kernel doubles what it is given, for its bookkeeping.
            let _ = s.set_recv_buffer_size(wanted / 2);
            let got = s.recv_buffer_size().unwrap_or(before);
            if got < wanted {
                capped = Some(Capped { wanted, got });
            }
        }
        capped
    }

    /// The bound addresses, for the start line.
    pub fn describe(&self) -> String {
        [&self.v4, &self.v6]
            .into_iter()
            .flatten()
            .map(|s| {
                s.local_addr()
                    .map_or_else(|e| e.to_string(), |a| a.to_string())
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

/// Binds the sockets for `own`, our entry, as `--bind` asks. Errors are
/// one line naming the address.
pub fn bind(bind: Option<Bind>, own: &Entry) -> Result<Sockets, String> {
    let explicit = match bind {
        Some(Bind::Addr(addr)) => Some(addr),
        Some(Bind::Ip(ip)) => Some(SocketAddr::new(ip, own.port)),
        None => None,
    };
    if let Some(addr) = explicit {
        // As asked: one socket. `::` stays dual-stack, as the system has it.
        let socket = open(addr, false).map_err(|e| failure(addr, &e))?;
        return Ok(match addr {
            SocketAddr::V4(_) => Sockets {
                v4: Some(socket),
                v6: None,
            },
            SocketAddr::V6(_) => Sockets {
                v4: None,
                v6: Some(socket),
            },
        });
    }
    let own_ip = match own.host {
        Host::Ip(ip) => Some(ip),
        Host::Name(_) => None,
    };
    let v4 = family(
        own_ip.filter(IpAddr::is_ipv4),
        Ipv4Addr::UNSPECIFIED.into(),
        own.port,
    )?;
    let v6 = family(
        own_ip.filter(IpAddr::is_ipv6),
        Ipv6Addr::UNSPECIFIED.into(),
        own.port,
    )?;
    match (v4, v6) {
        (Err(e4), Err(_)) => Err(e4),
        (v4, v6) => Ok(Sockets {
            v4: v4.ok(),
            v6: v6.ok(),
        }),
    }
}

/// The socket of one family: on `own` if it is an address of this
/// machine, else on `any`. The outer error is fatal (the port is taken);
/// the inner one means this family is not available here.
fn family(
    own: Option<IpAddr>,
    any: IpAddr,
    port: u16,
) -> Result<Result<UdpSocket, String>, String> {
    if let Some(ip) = own {
        let addr = SocketAddr::new(ip, port);
        match open(addr, true) {
            Ok(s) => return Ok(Ok(s)),
            Err(e) if e.kind() == ErrorKind::AddrInUse => return Err(failure(addr, &e)),
            // Not an address of this machine (behind NAT, say): every
            // address will do.
            Err(_) => {}
        }
    }
    let addr = SocketAddr::new(any, port);
    match open(addr, true) {
        Ok(s) => Ok(Ok(s)),
        Err(e) if e.kind() == ErrorKind::AddrInUse => Err(failure(addr, &e)),
        Err(e) => Ok(Err(failure(addr, &e))),
    }
}

fn open(addr: SocketAddr, v6_only: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && v6_only {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn failure(addr: SocketAddr, e: &io::Error) -> String {
    let why = if e.kind() == ErrorKind::AddrInUse {
        format!(
            "port {} is already in use (by another rollcall?)",
            addr.port()
        )
    } else {
        crate::io_reason(e)
    };
    format!("cannot bind {addr}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts;

    // Ports of block 99 in the table of tests/common/mod.rs.
    fn own(text: &str) -> Entry {
        hosts::parse(text, 7610).unwrap().remove(0)
    }

    #[test]
    fn an_own_address_is_bound_as_listed_and_the_other_family_on_every_address() {
        let s = bind(None, &own("127.0.0.2:29901")).unwrap();
        let v4 = s.v4.as_ref().unwrap().local_addr().unwrap();
        assert_eq!(v4.ip(), IpAddr::from([127, 0, 0, 2]));
        if let Some(v6) = &s.v6 {
            assert_eq!(v6.local_addr().unwrap().ip(), Ipv6Addr::UNSPECIFIED);
        }
    }

    #[test]
    fn a_name_binds_every_address() {
        let s = bind(None, &own("peer1:29902")).unwrap();
        let v4 = s.v4.as_ref().unwrap().local_addr().unwrap();
        assert_eq!(v4.ip(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn the_receive_buffer_grows_with_the_cluster_and_says_when_capped() {
        let s = bind(None, &own("peer1:29903")).unwrap();
        let socket = socket2::SockRef::from(s.v4.as_ref().unwrap());
        let default = socket.recv_buffer_size().unwrap();
        // A few peers fit the default: nothing asked, nothing said.
        assert_eq!(s.size_buffers(4), None);
        assert_eq!(socket.recv_buffer_size().unwrap(), default);
        // More than any system allows: as much as it gives, and said.
        let capped = s.size_buffers(usize::MAX / BUFFER_PER_PEER).unwrap();
        assert!(capped.got < capped.wanted);
        assert!(socket.recv_buffer_size().unwrap() >= default);
    }

    #[test]
    fn a_taken_port_is_an_error_naming_it() {
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = bind(None, &own(&format!("127.0.0.1:{port}"))).unwrap_err();
        assert!(e.contains(&format!("port {port} is already in use")), "{e}");
    }
}
