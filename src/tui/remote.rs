//! The TUI's data source for `fleet tui`: a client of the control socket like `fleet ps`.
//!
//! Snapshots and events come from one `subscribe` stream; commands go over their own
//! short connections, so a slow stop never blocks the stream; live output comes from
//! the log files themselves, followed by the same [`LogFollower`] as `fleet logs -f`
//! (inotify, not polling), which also gives the TUI the same bytes `fleet logs` shows.
//!
//! The files followed are every snapshot row's (`web.log` for a service or its replica
//! 1, `web.N.log` for replica N), and those of replicas added later (`fleet scale`, a
//! reload), picked up from each snapshot before the TUI sees it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::TuiSource;
use crate::control::client::{Client, ClientError};
use crate::event::{Command, Event, Snapshot};
use crate::logs::{Followed, LogFollower, LogLine};
use crate::protocol::{Reply, Request};

/// Connects to the fleet of `manifest` and builds the TUI's source. `services` are
/// the manifest's names; the snapshot adds its replicas' log names.
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
    let mut names = services;
    for row in &first.services {
        let name = row.log_name();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let (logs, follow) = follow_log_files(log_dir.clone(), names.clone());
    let (snapshot_sender, snapshots) = watch::channel(Arc::new(first));
    let (event_sender, events) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut followed: HashSet<String> = names.into_iter().collect();
        // Ends when the supervisor goes away; dropping the snapshot sender tells the TUI.
        while let Ok(Reply::Stream(value)) = client.next_reply().await {
            if let Some(snapshot) = value.get("snapshot") {
                if let Ok(snapshot) = serde_json::from_value::<Snapshot>(snapshot.clone()) {
                    // A new replica's file is followed from where it ends now, before
                    // the TUI reads its tail: the two overlap (the seam is cut) rather
                    // than leave a gap.
                    for row in &snapshot.services {
                        let name = row.log_name();
                        if !followed.contains(&name) {
                            follow.add(name.clone());
                            followed.insert(name);
                        }
                    }
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

/// Adds files to the follower of [`follow_log_files`], on its thread.
pub struct FollowMore {
    dir: PathBuf,
    files: std::sync::mpsc::Sender<Followed>,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl FollowMore {
    /// Follows `<dir>/<name>.log` too, from its end as it is now.
    pub fn add(&self, name: String) {
        if self.files.send(Followed::at_end(&self.dir, name)).is_ok() {
            (self.wake)();
        }
    }
}

/// Sends every line appended to `<dir>/<service>.log` from now on, per service, from
/// a [`LogFollower`] on its own thread (the same follower as `fleet logs -f`), and
/// takes more files to follow through the returned [`FollowMore`]. Rotation (the file
/// shrinking or being replaced) starts that file over; far behind a flood, the
/// follower skips to near the end, since the files keep everything for scrollback.
pub fn follow_log_files(
    dir: PathBuf,
    services: Vec<String>,
) -> (mpsc::Receiver<(String, Vec<LogLine>)>, FollowMore) {
    let (sender, receiver) = mpsc::channel(256);
    // Made here so the watch can be set at once, before the fleet writes a first line.
    let _ = std::fs::create_dir_all(&dir);
    let mut follower = LogFollower::new(dir.clone(), services).skip_when_behind(MAX_BEHIND);
    let (more_sender, more) = std::sync::mpsc::channel::<Followed>();
    let follow_more = FollowMore {
        dir,
        files: more_sender,
        wake: Box::new(follower.waker()),
    };
    let spawned = std::thread::Builder::new()
        .name("fleet-tui-follow".into())
        .spawn(move || {
            // The follower returns at least every second, so a closed TUI ends this.
            while !sender.is_closed() {
                for file in more.try_iter() {
                    follower.add(file);
                }
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
    (receiver, follow_more)
}
