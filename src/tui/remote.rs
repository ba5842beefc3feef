//! The TUI's data source for `fleet tui`: a client of the control socket like `fleet ps`.
//!
//! Snapshots and events come from one `subscribe` stream; commands go over their own
//! short connections, so a slow stop never blocks the stream; live output comes from
//! the log files themselves, followed through inotify (no polling), which also gives the
//! TUI the same bytes `fleet logs` shows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::TuiSource;
use crate::control::client::{Client, ClientError};
use crate::event::{Command, Event, Snapshot};
use crate::logs::LogLine;
use crate::protocol::{Reply, Request};

/// Connects to the fleet of `manifest` and builds the TUI's source.
pub async fn attach(
    manifest: &Path,
    log_dir: PathBuf,
    services: Vec<String>,
) -> Result<TuiSource, ClientError> {
    let mut client = Client::connect(manifest).await?;
    client.start_stream(Request::Subscribe).await?;
    let first = match client.next_reply().await? {
        Reply::Stream(value) => value
            .get("snapshot")
            .and_then(|snapshot| serde_json::from_value::<Snapshot>(snapshot.clone()).ok())
            .unwrap_or_default(),
        Reply::Error(body) => return Err(ClientError::Remote(body)),
        Reply::Ok(_) => Snapshot::default(),
    };
    let (snapshot_sender, snapshots) = watch::channel(Arc::new(first));
    let (event_sender, events) = mpsc::channel(1024);
    tokio::spawn(async move {
        // Ends when the supervisor goes away; dropping the snapshot sender tells the TUI.
        while let Ok(Reply::Stream(value)) = client.next_reply().await {
            if let Some(snapshot) = value.get("snapshot") {
                if let Ok(snapshot) = serde_json::from_value::<Snapshot>(snapshot.clone()) {
                    let _ = snapshot_sender.send(Arc::new(snapshot));
                }
            } else if let Some(event) = value.get("event") {
                if let Ok(event) = serde_json::from_value::<Event>(event.clone()) {
                    // A full queue means the TUI is busy; the snapshot carries the state.
                    let _ = event_sender.try_send(event);
                }
            }
        }
    });
    let manifest = manifest.to_path_buf();
    let send: super::SendCommand = Arc::new(move |command: Command| {
        let manifest = manifest.clone();
        Box::pin(async move {
            let mut client = Client::connect(&manifest)
                .await
                .map_err(|err| err.to_string())?;
            let reply = client
                .call(Request::Command { command })
                .await
                .map_err(|err| err.to_string())?;
            Ok(reply.as_str().unwrap_or_default().to_string())
        })
    });
    let logs = follow_log_files(log_dir.clone(), services);
    Ok(TuiSource {
        snapshots,
        events,
        logs,
        send,
        read_tail: TuiSource::read_tail_in(log_dir),
    })
}

/// Bytes a followed log may be ahead of the TUI before it skips to the end.
const MAX_BEHIND: u64 = 256 * 1024;
/// Appends are read at most this often: a service flooding its log then costs the TUI
/// a bounded share of the CPU, and keys keep their turn.
const READ_PERIOD: std::time::Duration = std::time::Duration::from_millis(33);

/// Sends every line appended to `<dir>/<service>.log` from now on, per service.
/// Rotation (the file shrinking or being replaced) starts that file over.
pub fn follow_log_files(
    dir: PathBuf,
    services: Vec<String>,
) -> mpsc::Receiver<(String, Vec<LogLine>)> {
    let (sender, receiver) = mpsc::channel(256);
    let (changed_sender, mut changed) = mpsc::unbounded_channel::<PathBuf>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = changed_sender.send(path);
            }
        }
    });
    let mut offsets: HashMap<PathBuf, (String, u64)> = services
        .into_iter()
        .map(|service| {
            let path = crate::logs::log_path(&dir, &service);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            (path, (service, size))
        })
        .collect();
    tokio::spawn(async move {
        let Ok(mut watcher) = watcher else { return };
        if std::fs::create_dir_all(&dir).is_err()
            || watcher.watch(&dir, RecursiveMode::NonRecursive).is_err()
        {
            return;
        }
        while let Some(path) = changed.recv().await {
            tokio::time::sleep(READ_PERIOD).await;
            let mut touched = vec![path];
            while let Ok(path) = changed.try_recv() {
                if !touched.contains(&path) {
                    touched.push(path);
                }
            }
            for path in touched {
                let Some((service, offset)) = offsets.get_mut(&path) else {
                    continue;
                };
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if size < *offset {
                    *offset = 0;
                }
                if size == *offset {
                    continue;
                }
                // Far behind a flood, jump close to the end: the live view shows the
                // newest lines; everything stays in the file for scrollback.
                if size - *offset > MAX_BEHIND {
                    *offset = size - MAX_BEHIND / 4;
                }
                if let Ok((lines, next)) = crate::logs::read_from(&path, *offset) {
                    *offset = next;
                    if !lines.is_empty() && sender.send((service.clone(), lines)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    receiver
}
