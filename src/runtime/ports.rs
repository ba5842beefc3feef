//! Port checks: is a TCP port free on loopback, and if not, who holds it; and which
//! instance accepted a given connection on a socket several instances share.
//!
//! The owner is found the way `ss -p` does it: the socket's inode from
//! `/proc/net/tcp{,6}`, then the process whose `/proc/PID/fd` links to that inode.
//! A connection still waiting in a listening socket's accept queue has inode 0 there:
//! no process holds it yet.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};

/// Who holds a port, as far as /proc tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortOwner {
    pub pid: i32,
    pub command: String,
}

/// Checks that nothing listens on `port`; returns the holder otherwise (`None` inside
/// the error when the holder can't be seen, e.g. another user's process).
pub fn check_free(port: u16) -> Result<(), Option<PortOwner>> {
    // Binding 0.0.0.0 fails if anything listens on any IPv4 address of that port.
    match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)) {
        Ok(_) => Ok(()),
        Err(_) => Err(find_owner(port)),
    }
}

/// Describes a busy port for an error message.
pub fn describe_busy(port: u16, owner: &Option<PortOwner>) -> String {
    match owner {
        Some(owner) => format!(
            "port {port} is already in use by pid {} ({})",
            owner.pid,
            one_line(&owner.command, 80)
        ),
        None => format!("port {port} is already in use (owner not visible)"),
    }
}

/// Describes each busy port among `ports`, in order, for an error message. The
/// socket's port (`socket_port`) is skipped: fleet binds that one itself and hands it
/// to every instance. Ports are checked as the descriptions are read, so a caller that
/// wants only the first busy one checks no further.
pub fn busy(
    ports: impl IntoIterator<Item = u16>,
    socket_port: Option<u16>,
) -> impl Iterator<Item = String> {
    ports
        .into_iter()
        .filter(move |port| Some(*port) != socket_port)
        .filter_map(|port| {
            check_free(port)
                .err()
                .map(|owner| describe_busy(port, &owner))
        })
}

/// A command line fit for one line of an error message.
fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max_chars {
        flat
    } else {
        let cut: String = flat.chars().take(max_chars.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

pub fn find_owner(port: u16) -> Option<PortOwner> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
            else {
                continue;
            };
            if inodes.iter().any(|wanted| wanted == inode) {
                return Some(PortOwner {
                    pid,
                    command: command_line(pid),
                });
            }
        }
    }
    None
}

fn listening_inodes(port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; inode is field 9.
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) && *state == "0A" {
                inodes.push((*inode).to_string());
            }
        }
    }
    inodes
}

/// Where the server side of one TCP connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// In the listening socket's accept queue: nobody accepted it yet.
    Queued,
    /// Accepted: a process holds this socket inode.
    Accepted { inode: u64 },
    /// No such connection (closed, or not visible in this network namespace).
    Gone,
}

/// Finds the server side of the connection from `client` (our end) to `server`:
/// asks the kernel for that one connection (sock_diag), or reads `/proc/net/tcp`
/// where it cannot.
pub fn acceptance(client: SocketAddr, server: SocketAddr) -> Acceptance {
    match super::sockdiag::server_side(client, server) {
        Some(super::sockdiag::Found::Inode(0)) => Acceptance::Queued,
        Some(super::sockdiag::Found::Inode(inode)) => Acceptance::Accepted { inode },
        Some(super::sockdiag::Found::Missing) => Acceptance::Gone,
        None => acceptance_from_proc(client, server),
    }
}

/// [`acceptance`] from `/proc/net/tcp` (or `tcp6`): every connection of the machine
/// is listed, so it costs tens of milliseconds under load.
pub fn acceptance_from_proc(client: SocketAddr, server: SocketAddr) -> Acceptance {
    let table = if client.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let Ok(text) = std::fs::read_to_string(table) else {
        return Acceptance::Gone;
    };
    // A busy machine lists tens of thousands of connections (TIME_WAIT ones too):
    // compare the port suffixes first and parse only the rows that match them.
    let server_port = format!(":{:04X}", server.port());
    let client_port = format!(":{:04X}", client.port());
    for line in text.lines().skip(1) {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_), Some(local), Some(remote)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // The server's side: its local end is `server`, its remote end is us.
        if !local.ends_with(&server_port) || !remote.ends_with(&client_port) {
            continue;
        }
        if parse_proc_address(local) != Some(server) || parse_proc_address(remote) != Some(client) {
            continue;
        }
        // After sl, local and remote: st, tx:rx, tr:tm, retrnsmt, uid, timeout, inode.
        return match fields.nth(6).map(str::parse::<u64>) {
            Some(Ok(0)) => Acceptance::Queued,
            Some(Ok(inode)) => Acceptance::Accepted { inode },
            _ => Acceptance::Gone,
        };
    }
    Acceptance::Gone
}

/// Whether `pid` or one of its descendants holds socket `inode` open. Descendants are
/// followed through `/proc/PID/task/*/children`, so only the instance's own tree is
/// read, however many processes the machine runs.
pub fn tree_holds_socket(pid: u32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    let mut pending = vec![pid as i32];
    let mut seen = 0usize;
    while let Some(pid) = pending.pop() {
        // A fork bomb must not make one probe read /proc forever.
        seen += 1;
        if seen > 10_000 {
            return false;
        }
        if holds_socket(pid, &wanted) {
            return true;
        }
        pending.extend(super::process::children_of(pid));
    }
    false
}

/// Whether process `pid` has `target` (`socket:[INODE]`) among its open files.
pub fn holds_socket(pid: i32, target: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target))
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6), as `/proc/net/tcp{,6}` writes them:
/// the address in the kernel's byte order, 32-bit word by word, then the port in hex.
fn parse_proc_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match address.len() {
        8 => {
            let word = u32::from_str_radix(address, 16).ok()?;
            IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes()))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (index, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(address.get(index * 8..index * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(std::net::Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The command line of a process, arguments joined by spaces.
pub fn command_line(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|byte| *byte == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_port_is_busy_and_its_owner_is_us() -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let owner = check_free(port).err().flatten();
        assert_eq!(owner.map(|o| o.pid), Some(std::process::id() as i32));
        drop(listener);
        assert_eq!(check_free(port), Ok(()));
        Ok(())
    }

    #[test]
    fn busy_describes_taken_ports_in_order_and_skips_the_sockets_port() -> std::io::Result<()> {
        let first = TcpListener::bind("0.0.0.0:0")?;
        let second = TcpListener::bind("0.0.0.0:0")?;
        let free = TcpListener::bind("0.0.0.0:0")?;
        let (first_port, second_port) = (first.local_addr()?.port(), second.local_addr()?.port());
        let free_port = free.local_addr()?.port();
        drop(free);
        let pid = std::process::id();
        let described: Vec<String> = busy([free_port, second_port, first_port], None).collect();
        assert_eq!(described.len(), 2, "{described:?}");
        assert!(
            described[0].starts_with(&format!(
                "port {second_port} is already in use by pid {pid} ("
            )),
            "{described:?}"
        );
        assert!(
            described[1].starts_with(&format!(
                "port {first_port} is already in use by pid {pid} ("
            )),
            "{described:?}"
        );
        let skipped: Vec<String> = busy([first_port], Some(first_port)).collect();
        assert!(skipped.is_empty(), "{skipped:?}");
        Ok(())
    }

    #[test]
    fn proc_addresses_parse_in_the_kernels_byte_order() {
        assert_eq!(
            parse_proc_address("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().expect("a valid address"))
        );
        assert_eq!(
            parse_proc_address("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().expect("a valid address"))
        );
        assert_eq!(parse_proc_address("zz"), None);
    }

    #[test]
    fn a_connection_is_queued_until_accepted_then_held_by_the_acceptor() -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let server = listener.local_addr()?;
        let client = std::net::TcpStream::connect(server)?;
        let ours = client.local_addr()?;
        assert_eq!(acceptance(ours, server), Acceptance::Queued);
        let (_accepted, _) = listener.accept()?;
        let Acceptance::Accepted { inode } = acceptance(ours, server) else {
            panic!("the accepted connection is not visible in /proc/net/tcp");
        };
        assert!(tree_holds_socket(std::process::id(), inode));
        Ok(())
    }
}
