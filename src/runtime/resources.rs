//! CPU and memory of each instance, as the kernel accounts them: a process instance's
//! whole process group from `/proc`, a container from its cgroup.
//!
//! Owns only the previous sample (to turn CPU time into a percentage). It reads, never
//! signals: a service's pid is the id of its process group (the runtime starts every
//! instance as a group leader), so every process whose `pgrp` is that pid belongs to
//! the service, grandchildren included. One sample scans `/proc` once, whatever the
//! number of services; callers run it off any latency-sensitive path (the TUI on a
//! blocking task, every couple of seconds). Containers are sampled from their cgroup
//! (CPU time and memory the kernel accounts to the container as a whole), under either
//! cgroup layout Docker uses.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::Instant;

/// Linux reports CPU times in clock ticks of `USER_HZ`, which the kernel ABI fixes at
/// 100 on every architecture (`sysconf(_SC_CLK_TCK)` answers 100 too).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// 100 is one core busy for the whole interval.
    pub cpu_percent: f32,
    pub rss_bytes: u64,
}

/// What to measure for one service: the instance's process group (by its leader's
/// pid) or its container (by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Group(u32),
    Container(String),
}

/// Remembers CPU ticks per process between samples.
#[derive(Debug, Default)]
pub struct ResourceSampler {
    previous: HashMap<u32, u64>,
    previous_at: Option<Instant>,
    seen_groups: HashSet<u32>,
    /// Container id -> (CPU nanoseconds, when read).
    previous_containers: HashMap<String, (u64, Instant)>,
}

/// Where a container's cgroup lives: cgroup v1 or v2, cgroupfs or systemd driver.
fn container_cgroup_files(id: &str) -> [(String, String); 4] {
    [
        (
            format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage"),
            format!("/sys/fs/cgroup/memory/docker/{id}/memory.usage_in_bytes"),
        ),
        (
            format!("/sys/fs/cgroup/cpuacct/system.slice/docker-{id}.scope/cpuacct.usage"),
            format!("/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.usage_in_bytes"),
        ),
        (
            format!("/sys/fs/cgroup/docker/{id}/cpu.stat"),
            format!("/sys/fs/cgroup/docker/{id}/memory.current"),
        ),
        (
            format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat"),
            format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.current"),
        ),
    ]
}

/// CPU nanoseconds from `cpuacct.usage` (v1: nanoseconds) or `cpu.stat` (v2:
/// `usage_usec` microseconds).
fn parse_cgroup_cpu(path: &str, text: &str) -> Option<u64> {
    if path.ends_with("cpu.stat") {
        let line = text.lines().find(|line| line.starts_with("usage_usec "))?;
        return line
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|usec| usec * 1000);
    }
    text.trim().parse().ok()
}

struct ProcStat {
    pgrp: u32,
    ticks: u64,
}

/// `pgrp` (field 5) and `utime + stime` (fields 14 and 15) of `/proc/<pid>/stat`. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted after
/// its last `)`.
fn parse_stat(stat: &str) -> Option<ProcStat> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcStat {
        pgrp,
        ticks: utime + stime,
    })
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes (the file says kB).
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl ResourceSampler {
    pub fn new() -> ResourceSampler {
        ResourceSampler::default()
    }

    /// Usage of each target, by service; see [`ResourceSampler::sample_groups`] and
    /// [`ResourceSampler::sample_containers`] for what a first sample reports.
    pub fn sample(&mut self, targets: &[(String, Target)]) -> Vec<(String, Usage)> {
        let mut groups = Vec::new();
        let mut containers = Vec::new();
        for (service, target) in targets {
            match target {
                Target::Group(pgid) => groups.push((service.clone(), *pgid)),
                Target::Container(id) => containers.push((service.clone(), id.clone())),
            }
        }
        let mut usage = self.sample_groups(&groups);
        usage.extend(self.sample_containers(&containers));
        usage
    }

    /// Usage of each container, by id, from its cgroup. A container seen for the first
    /// time reports 0% CPU; one whose cgroup can't be found is left out.
    pub fn sample_containers(&mut self, containers: &[(String, String)]) -> Vec<(String, Usage)> {
        let now = Instant::now();
        let mut seen = HashMap::new();
        let mut usage = Vec::new();
        for (service, id) in containers {
            let found =
                container_cgroup_files(id)
                    .into_iter()
                    .find_map(|(cpu_path, memory_path)| {
                        let cpu =
                            parse_cgroup_cpu(&cpu_path, &fs::read_to_string(&cpu_path).ok()?)?;
                        let memory = fs::read_to_string(&memory_path)
                            .ok()
                            .and_then(|m| m.trim().parse().ok())
                            .unwrap_or(0);
                        Some((cpu, memory))
                    });
            let Some((cpu_ns, memory)) = found else {
                continue;
            };
            let cpu_percent = match self.previous_containers.get(id) {
                Some((before, at)) => {
                    let elapsed = now.duration_since(*at).as_secs_f64();
                    if elapsed > 0.0 {
                        (cpu_ns.saturating_sub(*before) as f64 / 1e9 / elapsed * 100.0) as f32
                    } else {
                        0.0
                    }
                }
                None => 0.0,
            };
            seen.insert(id.clone(), (cpu_ns, now));
            usage.push((
                service.clone(),
                Usage {
                    cpu_percent,
                    rss_bytes: memory,
                },
            ));
        }
        self.previous_containers = seen;
        usage
    }

    /// Usage of each group whose leader's pid is in `groups`. A group seen for the
    /// first time reports 0% CPU: a rate needs two samples.
    pub fn sample_groups(&mut self, groups: &[(String, u32)]) -> Vec<(String, Usage)> {
        let wanted: HashSet<u32> = groups.iter().map(|(_, pgid)| *pgid).collect();
        let now = Instant::now();
        let elapsed = self
            .previous_at
            .map(|at| now.duration_since(at).as_secs_f64())
            .unwrap_or(0.0);
        let mut per_group: HashMap<u32, (f64, u64)> = HashMap::new();
        let mut ticks_now = HashMap::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // A process may exit between listing and reading; that is not an error.
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some(stat) = parse_stat(&stat) else {
                continue;
            };
            if !wanted.contains(&stat.pgrp) {
                continue;
            }
            let rss = fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| parse_rss(&status))
                .unwrap_or(0);
            let delta = match self.previous.get(&pid) {
                Some(before) => stat.ticks.saturating_sub(*before),
                // New since the last sample: all its time was spent in the interval.
                None if self.seen_groups.contains(&stat.pgrp) => stat.ticks,
                None => 0,
            };
            ticks_now.insert(pid, stat.ticks);
            let group = per_group.entry(stat.pgrp).or_default();
            group.0 += delta as f64;
            group.1 += rss;
        }
        self.previous = ticks_now;
        self.previous_at = Some(now);
        self.seen_groups = wanted;
        groups
            .iter()
            .map(|(service, pgid)| {
                let (ticks, rss) = per_group.get(pgid).copied().unwrap_or((0.0, 0));
                let cpu_percent = if elapsed > 0.0 {
                    (ticks / TICKS_PER_SECOND / elapsed * 100.0) as f32
                } else {
                    0.0
                };
                (
                    service.clone(),
                    Usage {
                        cpu_percent,
                        rss_bytes: rss,
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_cpu_reads_both_layouts() {
        assert_eq!(
            parse_cgroup_cpu("/x/cpuacct.usage", "123456789\n"),
            Some(123_456_789)
        );
        assert_eq!(
            parse_cgroup_cpu(
                "/x/cpu.stat",
                "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n"
            ),
            Some(2_500_000)
        );
        assert_eq!(parse_cgroup_cpu("/x/cpu.stat", "user_usec 1\n"), None);
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        let parsed = parse_stat(stat).expect("a valid stat line");
        assert_eq!(parsed.pgrp, 4242);
        assert_eq!(parsed.ticks, 300);
    }

    #[test]
    fn rss_comes_from_status_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t  1200 kB\n";
        assert_eq!(parse_rss(status), Some(1200 * 1024));
    }

    #[test]
    fn this_test_process_group_is_found() {
        let pgid = nix::unistd::getpgrp().as_raw() as u32;
        let mut sampler = ResourceSampler::new();
        let usage = sampler.sample(&[("self".into(), Target::Group(pgid))]);
        assert_eq!(usage.len(), 1);
        assert!(usage[0].1.rss_bytes > 0, "{usage:?}");
    }
}
