//! The TUI's data source for `fleet tui`: a client of the control socket like `fleet ps`.
//!
//! Snapshots and events come from one `subscribe` stream; commands go over their own
//! short connections, so a slow stop never blocks the stream; live output comes from
//! the log files themselves, followed by the same [`LogFollower`] as `fleet logs -f`
//! (inotify, not polling), which also gives the TUI the same bytes `fleet logs` shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::TuiSource;
use crate::control::client::{Client, ClientError};
use crate::event::{Command, Event, Snapshot};
use crate::logs::{LogFollower, LogLine};
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
            } else if let Some(event) = value.get("event")
                && let Ok(event) = serde_json::from_value::<Event>(event.clone())
            {
                // A full queue means the TUI is busy; the snapshot carries the state.
                let _ = event_sender.try_send(event);
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

/// Sends every line appended to `<dir>/<service>.log` from now on, per service, from
/// a [`LogFollower`] on its own thread (the same follower as `fleet logs -f`).
/// Rotation (the file shrinking or being replaced) starts that file over; far behind
/// a flood, the follower skips to near the end, since the files keep everything for
/// scrollback.
pub fn follow_log_files(
    dir: PathBuf,
    services: Vec<String>,
) -> mpsc::Receiver<(String, Vec<LogLine>)> {
    let (sender, receiver) = mpsc::channel(256);
    // Made here so the watch can be set at once, before the fleet writes a first line.
    let _ = std::fs::create_dir_all(&dir);
    let mut follower = LogFollower::new(dir, services).skip_when_behind(MAX_BEHIND);
    let spawned = std::thread::Builder::new()
        .name("fleet-tui-follow".into())
        .spawn(move || {
            // The follower returns at least every second, so a closed TUI ends this.
            while !sender.is_closed() {
                for appended in follower.next_lines() {
                    if sender.blocking_send(appended).is_err() {
                        return;
                    }
                }
            }
        });
    if let Err(err) = spawned {
        crate::note!("fleet: cannot follow the log files: {err}");
    }
    receiver
}
