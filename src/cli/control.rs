//! `start`, `stop`, `restart`, `redeploy`, `reload` and `down`: one command to the
//! running supervisor, then, where a script needs it, a wait for its effect.

use super::say;
use std::path::Path;

use super::{exit, small_runtime, snapshot_of, CliError};
use crate::control::client::Client;
use crate::control::{Endpoint, SupervisorLock};
use crate::event::{Command, Snapshot};
use crate::manifest;
use crate::protocol::Request;

/// How long `down` waits for the supervisor to exit after its reply: its container
/// removals and the network's are each bounded by the engine client's two-minute
/// request timeout, so a live supervisor is gone within about this.
const SUPERVISOR_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(240);

/// Sends `request` to the running supervisor and prints its answer; `start` and
/// `restart` then wait for the new instances, `down` for the supervisor to let go of
/// the project (and, with `remove_volumes`, remove the project's Docker volumes).
pub(super) fn send(path: &Path, request: Command, remove_volumes: bool) -> Result<i32, CliError> {
    small_runtime()?.block_on(async {
        let mut client = Client::connect(path).await?;
        let is_down = command_is_down(&request);
        let waits_for_restart = match &request {
            Command::Restart { services } => Some((services.clone(), true)),
            Command::Start { services } => Some((services.clone(), false)),
            _ => None,
        };
        let before = snapshot_of(&mut client).await?;
        let reply = client.call(Request::Command { command: request }).await?;
        if let Some(text) = reply.as_str() {
            say!("{text}");
        }
        if let Some((services, require_new)) = waits_for_restart {
            wait_for_new_instances(&mut client, &before, &services, require_new).await?;
        }
        if is_down {
            // The reply comes once every service is gone; wait for the supervisor
            // process itself to let go of the project, so an `up` right after works.
            let endpoint = Endpoint::for_manifest(path)
                .map_err(|err| CliError::new(exit::FAILURE, err.to_string()))?;
            // A blocking wait for the lock, in a thread of its own so the deadline can
            // give up on it (the thread ends with this process): the command returns
            // the moment the supervisor exits instead of at the next poll. Before it
            // exits, the supervisor waits for the engine to remove the containers
            // (in the background, since they stopped) and the network: seconds for
            // many containers on a busy machine.
            let (released, wait) = tokio::sync::oneshot::channel();
            let lock = endpoint.lock.clone();
            std::thread::spawn(move || {
                let _ = released.send(SupervisorLock::acquire(&lock).is_ok());
            });
            let _ = tokio::time::timeout(SUPERVISOR_EXIT_WAIT, wait).await;
            if remove_volumes {
                let manifest = manifest::load(path)?;
                if manifest.services.iter().any(|s| s.is_container()) {
                    let docker = crate::runtime::container::Docker::connect()
                        .await
                        .map_err(|err| CliError::new(exit::FAILURE, format!("fleet: {err}")))?;
                    docker.remove_volumes(&manifest.project.name).await;
                    say!("volumes removed");
                }
            }
        }
        Ok(exit::SUCCESS)
    })
}

/// After `restart`/`start`: wait until each service runs a newer generation (or gave
/// up), so a script can use it as soon as the command returns.
async fn wait_for_new_instances(
    client: &mut Client,
    before: &Snapshot,
    services: &[String],
    require_new: bool,
) -> Result<(), CliError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = snapshot_of(client).await?;
        let pending: Vec<&String> = services
            .iter()
            .filter(|name| {
                let Some(service) = now.service(name) else {
                    return false;
                };
                let old = before.service(name);
                let settled = service.status.state.is_up()
                    || matches!(
                        service.status.state,
                        crate::event::ServiceState::Failed | crate::event::ServiceState::Completed
                    );
                let newer = service.status.generation
                    > old.map(|s| s.status.generation).unwrap_or_default();
                // `start` of a service that already ran leaves it as it was.
                let untouched = !require_new
                    && old.is_some_and(|old| {
                        old.status.state.is_up() && old.status.pid == service.status.pid
                    });
                !(settled && (newer || untouched))
            })
            .collect();
        if pending.is_empty() {
            for name in services {
                if let Some(service) = now.service(name) {
                    let pid = service
                        .status
                        .pid
                        .map(|p| format!(" (pid {p})"))
                        .unwrap_or_default();
                    say!("{name}: {}{pid}", service.status.state);
                }
            }
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(CliError::new(
                exit::FAILURE,
                "fleet: timed out waiting for the new instances".to_string(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn command_is_down(command: &Command) -> bool {
    matches!(command, Command::Down | Command::Kill)
}
