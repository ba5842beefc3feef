//! One TCP connection looked up in the kernel by its four-tuple, over the sock_diag
//! netlink interface (what `ss` uses): which socket inode holds its server side, if
//! any process accepted it yet.
//!
//! Owns building the request and reading the answer. Must not decide what a lookup
//! means for a probe (`ports::acceptance` does): it only says what the kernel said.
//!
//! # Theory of operation
//! `/proc/net/tcp` lists every connection of the machine; under load (thousands of
//! TIME_WAIT rows) one read costs tens of milliseconds. A sock_diag request names the
//! exact connection, so the kernel answers with one record whatever the machine does.
//! The request is an `inet_diag_req_v2` for the server's side (local = the server
//! address, remote = our end); the answer's inode is 0 while the connection waits in
//! the listen backlog and becomes the accepted socket's inode once a process took it.
//! Where netlink is unavailable (a kernel without sock_diag, a seccomp filter), the
//! caller falls back to `/proc`.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// `SOCK_DIAG_BY_FAMILY`, the request and answer type.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const IPPROTO_TCP: u8 = 6;
const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_RECV: u8 = 3;
/// `INET_DIAG_NOCOOKIE`: match by address, not by the kernel's socket cookie.
const NO_COOKIE: u32 = !0;
const HEADER_LEN: usize = 16;
/// `inet_diag_req_v2`: family, protocol, ext, pad, states, then the socket id.
const REQUEST_LEN: usize = 8 + SOCKID_LEN;
/// `inet_diag_sockid`: ports, two 16-byte addresses, interface, cookie.
const SOCKID_LEN: usize = 4 + 16 + 16 + 4 + 8;
/// Offset of `idiag_inode` in an `inet_diag_msg` (after family, state, timer,
/// retrans, the socket id, expires, rqueue, wqueue and uid).
const INODE_OFFSET: usize = 4 + SOCKID_LEN + 16;

/// What the kernel knows of a connection's server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The socket inode holding it; 0 while it waits in the backlog.
    Inode(u64),
    /// No such connection.
    Missing,
}

/// Looks up the server side of the connection from `client` to `server`. `None`
/// when the netlink interface cannot be used here.
pub fn server_side(client: SocketAddr, server: SocketAddr) -> Option<Found> {
    let family = match (server.ip(), client.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => libc_af_inet(),
        (IpAddr::V6(_), IpAddr::V6(_)) => libc_af_inet6(),
        _ => return None,
    };
    let remote_port = client.port();
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    let request = request(family, server, client);
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .ok()?;
    let mut answer = [0u8; 512];
    let read = recv(fd.as_raw_fd(), &mut answer, MsgFlags::empty()).ok()?;
    parse(&answer[..read], remote_port)
}

fn libc_af_inet() -> u8 {
    2
}

fn libc_af_inet6() -> u8 {
    10
}

/// The netlink message asking for the socket whose local end is `local` and whose
/// remote end is `remote`.
fn request(family: u8, local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
    let total = HEADER_LEN + REQUEST_LEN;
    let mut message = Vec::with_capacity(total);
    message.extend_from_slice(&u32::try_from(total).unwrap_or(0).to_ne_bytes());
    message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    message.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    message.extend_from_slice(&(!0u32).to_ne_bytes()); // every state
    message.extend_from_slice(&local.port().to_be_bytes());
    message.extend_from_slice(&remote.port().to_be_bytes());
    message.extend_from_slice(&address_bytes(local.ip()));
    message.extend_from_slice(&address_bytes(remote.ip()));
    message.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    message.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    message.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    message
}

/// An address as `inet_diag_sockid` holds it: network order, IPv4 in the first four
/// of sixteen bytes.
fn address_bytes(ip: IpAddr) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes = v6.octets(),
    }
    bytes
}

/// Reads the kernel's answer: one `inet_diag_msg`, or an error message (`ENOENT`
/// when there is no such connection).
/// `remote_port` is the port asked for: for a four-tuple with no connection, the
/// kernel answers with the listening socket (remote port 0), which is not it.
fn parse(answer: &[u8], remote_port: u16) -> Option<Found> {
    let header = answer.get(..HEADER_LEN)?;
    let kind = u16::from_ne_bytes([header[4], header[5]]);
    let body = &answer[HEADER_LEN..];
    match kind {
        NLMSG_ERROR => {
            let code = i32::from_ne_bytes(body.get(..4)?.try_into().ok()?);
            // -ENOENT: the kernel has no such connection; any other error means the
            // interface is not usable as asked.
            (code == -2).then_some(Found::Missing)
        }
        SOCK_DIAG_BY_FAMILY => {
            let state = *body.get(1)?;
            // The socket id follows family, state, timer and retrans: sport, dport.
            let dport = u16::from_be_bytes(body.get(6..8)?.try_into().ok()?);
            if dport != remote_port {
                return Some(Found::Missing);
            }
            let inode = body.get(INODE_OFFSET..INODE_OFFSET + 4)?;
            let inode = u64::from(u32::from_ne_bytes(inode.try_into().ok()?));
            // Without an owner, only a connection still in the backlog (established,
            // or its handshake finishing) may yet be accepted; a closing one never will.
            if inode == 0 && state != TCP_ESTABLISHED && state != TCP_SYN_RECV {
                return Some(Found::Missing);
            }
            Some(Found::Inode(inode))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn a_connection_is_queued_then_accepted_then_gone() -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let server = listener.local_addr()?;
        let stream = TcpStream::connect(server)?;
        let client = stream.local_addr()?;
        // In the backlog: the kernel knows it, no process holds it yet.
        assert_eq!(server_side(client, server), Some(Found::Inode(0)));
        let (accepted, _) = listener.accept()?;
        let Some(Found::Inode(inode)) = server_side(client, server) else {
            panic!("the accepted connection is not found");
        };
        let fd_link = std::fs::read_link(format!("/proc/self/fd/{}", accepted.as_raw_fd()))?;
        assert_eq!(fd_link.to_string_lossy(), format!("socket:[{inode}]"));
        // The same answer /proc/net/tcp gives.
        assert_eq!(
            crate::runtime::ports::acceptance_from_proc(client, server),
            crate::runtime::ports::Acceptance::Accepted { inode }
        );
        drop(stream);
        drop(accepted);
        let unknown: SocketAddr = "127.0.0.1:1".parse().map_err(std::io::Error::other)?;
        assert_eq!(server_side(unknown, server), Some(Found::Missing));
        Ok(())
    }

    #[test]
    fn ipv6_connections_are_found_too() -> std::io::Result<()> {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            // No IPv6 loopback on this machine: nothing to look up.
            return Ok(());
        };
        let server = listener.local_addr()?;
        let stream = TcpStream::connect(server)?;
        let client = stream.local_addr()?;
        assert_eq!(server_side(client, server), Some(Found::Inode(0)));
        Ok(())
    }
}
