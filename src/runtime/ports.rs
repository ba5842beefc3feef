//! Port checks: is a TCP port free on loopback, and if not, who holds it.
//!
//! The owner is found the way `ss -p` does it: the socket's inode from
//! `/proc/net/tcp{,6}`, then the process whose `/proc/PID/fd` links to that inode.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

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
}
