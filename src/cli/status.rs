//! `ps` and `logs`: what the fleet is doing. `ps` asks the running supervisor; `logs`
//! reads the log files, so it works with or without one.

use super::say;
use std::io::Write;
use std::path::Path;

use super::{exit, small_runtime, snapshot_of, CliError, LogsArgs};
use crate::control::client::Client;
use crate::event::{now_ms, Snapshot};
use crate::manifest;
use crate::supervisor::printer::{use_color, Labels};

/// `fleet ps`: the running supervisor's snapshot as a table, or as JSON.
pub(super) fn ps(path: &Path, json: bool, all: bool) -> Result<i32, CliError> {
    small_runtime()?.block_on(async {
        let mut client = Client::connect(path).await?;
        let mut snapshot = snapshot_of(&mut client).await?;
        if !all {
            snapshot.services.retain(|service| !service.inactive);
        }
        if json {
            let text = serde_json::to_string_pretty(&snapshot.services)
                .map_err(|err| CliError::new(exit::FAILURE, err.to_string()))?;
            say!("{text}");
        } else {
            super::print_out(&render_ps(&snapshot, now_ms()));
        }
        Ok(exit::SUCCESS)
    })
}

/// The `fleet ps` table.
pub fn render_ps(snapshot: &Snapshot, now_ms: u64) -> String {
    let header = [
        "NAME",
        "KIND",
        "STATE",
        "PID",
        "GEN",
        "RESTARTS",
        "UPTIME",
        "PORTS",
        "HEALTH",
        "LAST EVENT",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for service in &snapshot.services {
        let pid = match (&service.status.pid, &service.status.container) {
            (Some(pid), _) => pid.to_string(),
            (None, Some(id)) => crate::event::short_id(id).to_string(),
            _ => "-".into(),
        };
        let uptime = service
            .status
            .started_at_ms
            .filter(|_| service.status.state.is_up())
            .map(|at| crate::event::format_duration_ms(now_ms.saturating_sub(at)))
            .unwrap_or_else(|| "-".into());
        let ports = if service.status.ports.is_empty() {
            "-".to_string()
        } else {
            service
                .status
                .ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut state = service.status.state.to_string();
        if service.inactive {
            state = format!("inactive (profile {})", service.profiles.join(", "));
        } else if service.replicas == 0
            && service.status.state == crate::event::ServiceState::Stopped
        {
            state = "stopped (0 replicas)".into();
        }
        if service.status.build == Some(crate::event::BuildStatus::Failed) {
            state.push_str(" (build failed)");
        }
        let last = match (&service.waiting_for, &service.last_event) {
            _ if service.status.state == crate::event::ServiceState::Starting
                && service.status.started_at_ms.is_some() =>
            {
                service.starting_note(now_ms).unwrap_or_default()
            }
            (Some(waiting), _) if service.status.state == crate::event::ServiceState::Waiting => {
                format!("waiting for {waiting}")
            }
            (_, Some(event)) => {
                let ago = service
                    .last_event_at_ms
                    .map(|at| {
                        format!(
                            " ({} ago)",
                            crate::event::format_duration_ms(now_ms.saturating_sub(at))
                        )
                    })
                    .unwrap_or_default();
                format!("{event}{ago}")
            }
            _ => String::new(),
        };
        rows.push(vec![
            service.name.clone(),
            service.kind.to_string(),
            state,
            pid,
            service.status.generation.to_string(),
            service.status.restarts.to_string(),
            uptime,
            ports,
            service
                .status
                .health
                .map(|health| health.to_string())
                .unwrap_or_else(|| "-".into()),
            last,
        ]);
    }
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `fleet logs`: reads the files under `.fleet/logs`, so it works with or without a
/// running fleet; `-f` follows the files as they grow (and rotate).
pub(super) fn logs(path: &Path, args: LogsArgs) -> Result<i32, CliError> {
    let manifest = manifest::load(path)?;
    let dir = manifest.log_dir();
    let known: Vec<&str> = manifest.services.iter().map(|s| s.name.as_str()).collect();
    // Each name's log files (`NAME` for replica 1, `NAME.N` for the others) and the
    // label its lines get: `NAME.N` for every replica of a replicated service.
    let mut files: Vec<(String, String)> = Vec::new();
    let mut expand = |service: &str, only: Option<u32>| {
        let others = crate::logs::replica_logs(&dir, service);
        let replicated = !others.is_empty();
        for replica in std::iter::once(1).chain(others) {
            if only.is_some_and(|only| only != replica) {
                continue;
            }
            let id = crate::event::ReplicaId::new(service, replica);
            files.push((id.file_name(), id.display_name(replicated)));
        }
    };
    // Services followed whole: replicas added later (`fleet scale`) join the follow.
    let mut whole: Vec<String> = Vec::new();
    if args.services.is_empty() {
        for service in &known {
            expand(service, None);
            whole.push(service.to_string());
        }
    } else {
        for name in &args.services {
            if known.contains(&name.as_str()) {
                expand(name, None);
                whole.push(name.clone());
                continue;
            }
            let replica = name.rsplit_once('.').and_then(|(service, number)| {
                let number = number.parse::<u32>().ok()?;
                known.contains(&service).then_some((service, number))
            });
            let exists = replica.is_some_and(|(service, number)| {
                crate::logs::log_path(
                    &dir,
                    &crate::event::ReplicaId::new(service, number).file_name(),
                )
                .exists()
            });
            match replica {
                Some((service, number)) if exists => expand(service, Some(number)),
                _ => {
                    let hint = crate::manifest::diagnostic::suggest(name, known.iter().copied())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(CliError::new(
                        exit::INVALID,
                        format!("fleet: unknown service `{name}`{hint}"),
                    ));
                }
            }
        }
    }
    let mut label_of: std::collections::HashMap<String, String> = files.iter().cloned().collect();
    let names: Vec<String> = files.iter().map(|(file, _)| file.clone()).collect();
    let all_names: Vec<String> = files.iter().map(|(_, label)| label.clone()).collect();
    let shown: Vec<String> = all_names.clone();
    let labels = Labels::new(&all_names, &shown, use_color(&std::io::stdout()));
    let mut merged: Vec<(String, String, crate::logs::LogLine)> = Vec::new();
    for name in &names {
        let lines = crate::logs::read_tail(&dir, name, args.lines).map_err(|err| {
            CliError::new(
                exit::FAILURE,
                format!("fleet: cannot read the log of `{name}`: {err}"),
            )
        })?;
        merged.extend(
            lines
                .into_iter()
                .map(|line| (line.timestamp.clone(), name.clone(), line)),
        );
    }
    // A stable sort keeps each service's own order among equal timestamps.
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = merged.len().saturating_sub(args.lines);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (_, name, line) in merged.into_iter().skip(skip) {
        let label = label_of.get(&name).map_or(name.as_str(), String::as_str);
        let _ = writeln!(out, "{}{}", labels.prefix(label), line.text);
    }
    let _ = out.flush();
    if !args.follow {
        return Ok(exit::SUCCESS);
    }
    let mut follower = crate::logs::LogFollower::new(dir.clone(), names);
    loop {
        for service in &whole {
            for replica in crate::logs::replica_logs(&dir, service) {
                let id = crate::event::ReplicaId::new(service.as_str(), replica);
                if label_of.contains_key(&id.file_name()) {
                    continue;
                }
                // A new replica's file: followed from its first line.
                follower.add(crate::logs::Followed::from_start(&dir, id.file_name()));
                label_of.insert(id.file_name(), id.display_name(true));
                // Replica 1 is `NAME.1` now that there are several.
                label_of.insert(service.clone(), format!("{service}.1"));
            }
        }
        let mut batch: Vec<(String, String, String)> = Vec::new();
        for (name, lines) in follower.next_lines() {
            batch.extend(
                lines
                    .into_iter()
                    .map(|l| (l.timestamp, name.clone(), l.text)),
            );
        }
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = std::io::BufWriter::new(stdout.lock());
        for (_, name, text) in batch {
            let label = label_of.get(&name).map_or(name.as_str(), String::as_str);
            if writeln!(out, "{}{}", labels.prefix(label), text).is_err() {
                return Ok(exit::SUCCESS);
            }
        }
        if out.flush().is_err() {
            return Ok(exit::SUCCESS);
        }
    }
}
