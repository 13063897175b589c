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
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

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
    // Without the stamps every datagram counts as arrived when read.
    let _ = stamp_arrivals(socket.as_raw_fd());
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Asks the kernel to stamp every datagram with when it reached the socket
/// (`SO_TIMESTAMPNS`), which [`recv`] reads.
fn stamp_arrivals(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and an option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            std::mem::size_of_val(&on) as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Arrival stamps older than this are taken for a step of the wall clock
/// (the kernel stamps with it) and ignored.
const MAX_AGE: Duration = Duration::from_secs(1);

/// Receives one datagram into `buf`: its length, its source, and when it
/// reached the socket (now if the kernel did not stamp it), on the
/// monotonic clock of `now`.
pub fn recv(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    // Room for the one control message asked for (a `timespec`), aligned
    // as `cmsghdr` wants.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `try_init` hands storage for an address and its length;
    // recvmsg writes at most that much there, the datagram into `buf`
    // through `iov`, and the control messages into `control`, all of
    // which outlive the call.
    let (n, from) = unsafe {
        SockAddr::try_init(|storage, len| {
            msg.msg_name = storage.cast();
            msg.msg_namelen = *len;
            let n = libc::recvmsg(socket.as_raw_fd(), &raw mut msg, 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *len = msg.msg_namelen;
            Ok(n as usize)
        })?
    };
    let wall = SystemTime::now();
    let now = Instant::now();
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "a source that is not IP"))?;
    let mut stamp = None;
    // SAFETY: the control buffer holds `msg_controllen` bytes that
    // recvmsg wrote; the CMSG macros walk only within them, and a
    // SCM_TIMESTAMPNS message carries one `timespec`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
        while !c.is_null() {
            let whole = (*c).cmsg_len as usize
                >= libc::CMSG_LEN(std::mem::size_of::<libc::timespec>() as u32) as usize;
            if (*c).cmsg_level == libc::SOL_SOCKET
                && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                && whole
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                stamp = Some((ts.tv_sec, ts.tv_nsec));
            }
            c = libc::CMSG_NXTHDR(&raw const msg, c);
        }
    }
    let stamp = stamp.and_then(|(secs, nanos)| {
        let secs = u64::try_from(secs).ok()?;
        let nanos = u32::try_from(nanos).ok()?;
        UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
    });
    Ok((n, from, arrival(stamp, wall, now)))
}

/// When a datagram stamped `stamp` on the wall clock reached the socket,
/// on the monotonic clock: `now` less its age at `wall`; `now` without a
/// stamp, or with one from the future or older than [`MAX_AGE`].
fn arrival(stamp: Option<SystemTime>, wall: SystemTime, now: Instant) -> Instant {
    let age = stamp
        .and_then(|s| wall.duration_since(s).ok())
        .filter(|age| *age <= MAX_AGE)
        .unwrap_or_default();
    now.checked_sub(age).unwrap_or(now)
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

    #[test]
    fn a_datagram_is_stamped_with_when_it_reached_the_socket() {
        let s = bind(None, &own("127.0.0.1:29904")).unwrap();
        let socket = s.v4.as_ref().unwrap();
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        // The kernel switches receive stamping on for the whole system a
        // moment after the first socket asks (deferred work); until then a
        // datagram is stamped when read. So a few tries, each a datagram
        // left waiting in the receive queue: the wait is what is measured,
        // so the sleep is the test itself.
        let waited = Duration::from_millis(50);
        let mut seen = Vec::new();
        for _ in 0..20 {
            let before = Instant::now();
            sender.send_to(b"hello", "127.0.0.1:29904").unwrap();
            std::thread::sleep(waited);
            let read_at = Instant::now();
            let mut buf = [0u8; 64];
            let (n, from, arrived) = recv(socket, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from, sender.local_addr().unwrap());
            // Never before it was sent (within the clocks' conversion).
            assert!(
                arrived + Duration::from_millis(1) >= before,
                "{:?}",
                before - arrived
            );
            // Stamped: a full wait before it was read.
            if read_at - arrived >= waited {
                return;
            }
            seen.push(read_at - arrived);
        }
        panic!("never stamped on arrival: read {seen:?} after arriving");
    }

    #[test]
    fn an_arrival_is_now_without_a_stamp_or_with_one_from_the_future_or_a_clock_step() {
        let (wall, now) = (SystemTime::now(), Instant::now());
        assert_eq!(arrival(None, wall, now), now);
        let future = wall + Duration::from_secs(5);
        assert_eq!(arrival(Some(future), wall, now), now);
        let ms = Duration::from_millis(3);
        assert_eq!(arrival(Some(wall - ms), wall, now), now - ms);
        let step = wall - Duration::from_secs(3600);
        assert_eq!(arrival(Some(step), wall, now), now);
    }
}
