//! `up`: launch the supervisor here (foreground), in the background (`-d`, `--wait`),
//! or apply the manifest to the one already running; then, where asked, wait until the
//! selected services are started or ready.

use super::say;
use std::io::IsTerminal;
use std::path::Path;

use super::{exit, small_runtime, supervisor_runtime, CliError, UpArgs};
use crate::control::client::Client;
use crate::control::{Endpoint, SupervisorLock};
use crate::event::{Command, Snapshot};
use crate::manifest::{self, Activation, Manifest};
use crate::protocol::Request;
use crate::supervisor::launch::{launch, Ended, Front, Launch};

/// The services `fleet up` runs: `--profile` flags and `FLEET_PROFILES`, and the
/// services named.
pub(super) fn activation(profiles: &[String], services: &[String]) -> Activation {
    let env = std::env::var("FLEET_PROFILES").ok();
    Activation::new(profiles, env.as_deref(), services)
}

pub(super) fn up(path: &Path, args: UpArgs) -> Result<i32, CliError> {
    let activation = activation(&args.profiles, &args.services);
    let manifest = manifest::load_with(path, &activation)?;
    manifest
        .check_activation(&activation)
        .map_err(|problem| CliError::new(exit::INVALID, format!("error: {problem}")))?;
    let endpoint = Endpoint::for_manifest(&manifest.path).map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("fleet: cannot create the runtime dir: {err}"),
        )
    })?;
    let lock = SupervisorLock::try_acquire(&endpoint.lock).map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("fleet: cannot take {}: {err}", endpoint.lock.display()),
        )
    })?;
    let Some(lock) = lock else {
        // A supervisor already runs this project: apply the manifest as it is now.
        return small_runtime()?.block_on(apply_to_running(&manifest, &args, &activation));
    };
    if (args.detach || args.wait) && !args.detached_child {
        drop(lock);
        return detach(&manifest, &args, &activation);
    }
    // Before the runtime starts its threads: a forked keeper is a fraction of the size.
    let keeper = crate::runtime::reaper::PendingKeeper::fork();
    let runtime = supervisor_runtime()?;
    let tui = !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let front = if args.detached_child {
        Front::Lines {
            service_output: false,
        }
    } else if tui {
        Front::Ui(super::tui::foreground())
    } else {
        Front::Lines {
            service_output: true,
        }
    };
    let state_dir = manifest.state_dir();
    let ended = runtime.block_on(launch(Launch {
        manifest,
        activation,
        endpoint,
        lock,
        front,
        state_dir,
        ephemeral: false,
        keeper,
    }))?;
    Ok(match ended {
        Ended::Stopped => exit::SUCCESS,
        Ended::Killed => exit::KILLED,
    })
}

/// `fleet up` while a supervisor runs: reload the manifest, start what was asked.
async fn apply_to_running(
    manifest: &Manifest,
    args: &UpArgs,
    activation: &Activation,
) -> Result<i32, CliError> {
    let mut client = Client::connect(&manifest.path).await?;
    let reply = client
        .call(Request::Command {
            command: Command::Reload,
        })
        .await?;
    say!(
        "fleet is already running; manifest applied: {}",
        reply.as_str().unwrap_or("done")
    );
    let reply = client
        .call(Request::Command {
            command: Command::Start {
                // Profiles asked for now may not be the running fleet's: name what
                // they enable.
                services: if args.services.is_empty() && !activation.profiles.is_empty() {
                    manifest.selection(activation)
                } else {
                    args.services.clone()
                },
            },
        })
        .await?;
    if let Some(text) = reply.as_str() {
        say!("{text}");
    }
    if args.wait {
        return wait_until_ready(manifest, activation, args.wait_timeout, true).await;
    }
    Ok(exit::SUCCESS)
}

/// Starts the supervisor as a background process and waits until it has started the
/// services (with `--wait`: until they are healthy).
fn detach(manifest: &Manifest, args: &UpArgs, activation: &Activation) -> Result<i32, CliError> {
    let state_dir = manifest.state_dir();
    std::fs::create_dir_all(&state_dir).map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("fleet: cannot create {}: {err}", state_dir.display()),
        )
    })?;
    let log_path = crate::project::supervisor_log(&state_dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|err| {
            CliError::new(
                exit::FAILURE,
                format!("fleet: cannot open {}: {err}", log_path.display()),
            )
        })?;
    let log_err = log
        .try_clone()
        .map_err(|err| CliError::new(exit::FAILURE, err.to_string()))?;
    let exe =
        std::env::current_exe().map_err(|err| CliError::new(exit::FAILURE, err.to_string()))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("-f")
        .arg(&manifest.path)
        .args(["up", "--no-tui", "--detached-child"])
        .args(
            activation
                .profiles
                .iter()
                .flat_map(|profile| ["--profile", profile.as_str()]),
        )
        .args(&args.services)
        .current_dir(&manifest.root)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err);
    crate::runtime::process::detach_from_session(&mut command);
    let mut child = command.spawn().map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("fleet: cannot start the supervisor: {err}"),
        )
    })?;
    let runtime = small_runtime()?;
    runtime.block_on(async {
        // Wait for the supervisor to answer (or to fail before it does).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last: Vec<&str> = tail
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                return Err(CliError::new(
                    status.code().unwrap_or(exit::FAILURE),
                    format!(
                        "fleet: the supervisor exited during startup:\n{}",
                        last.join("\n")
                    ),
                ));
            }
            match Client::connect(&manifest.path).await {
                Ok(_) => break,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
        say!(
            "fleet: supervisor running in the background (pid {}), output in {}",
            child.id(),
            log_path.display()
        );
        wait_until_ready(manifest, activation, args.wait_timeout, args.wait).await
    })
}

/// Follows the supervisor's snapshots until every selected service is started (or,
/// with `healthy`, ready: healthy, running without a probe, or completed).
async fn wait_until_ready(
    manifest: &Manifest,
    activation: &Activation,
    timeout: std::time::Duration,
    healthy: bool,
) -> Result<i32, CliError> {
    let mut client = Client::connect(&manifest.path).await?;
    client.start_stream(Request::Subscribe).await?;
    let selected: Vec<String> = manifest.selection(activation);
    let rows = |snapshot: &Snapshot| crate::readiness::selected_rows(snapshot, &selected);
    // `--wait-timeout` is capped at parse time; checked anyway, as `Instant + Duration`
    // panics where it overflows.
    let deadline = tokio::time::Instant::now()
        .checked_add(timeout)
        .ok_or_else(|| CliError::new(exit::INVALID, "error: --wait-timeout is too long"))?;
    let mut last: Option<Snapshot> = None;
    loop {
        let reply = match tokio::time::timeout_at(deadline, client.next_reply()).await {
            Ok(reply) => reply?,
            Err(_) => break,
        };
        let crate::protocol::Reply::Stream(value) = reply else {
            break;
        };
        let Some(snapshot) = value.get("snapshot") else {
            continue;
        };
        let Ok(snapshot) = serde_json::from_value::<Snapshot>(snapshot.clone()) else {
            continue;
        };
        let current = rows(&snapshot);
        let verdict = crate::readiness::verdict(&current);
        // A service waiting on a dependency that failed for good will not start: for
        // `-d` that is settled (reported below), for `--wait` it is a failure.
        let done = if healthy {
            verdict == crate::readiness::Verdict::Ready
        } else {
            current.iter().all(|service| {
                let s = service.status.state;
                s.is_up()
                    || matches!(
                        s,
                        crate::event::ServiceState::Completed | crate::event::ServiceState::Failed
                    )
                    || crate::readiness::blocked(service)
            })
        };
        if !healthy && done {
            for service in &current {
                if service.status.state == crate::event::ServiceState::Failed {
                    crate::note!(
                        "fleet: {} failed: {}",
                        service.name,
                        service.last_event.as_deref().unwrap_or("see its log")
                    );
                } else if service.status.state == crate::event::ServiceState::Waiting {
                    crate::note!(
                        "fleet: {} will not start: waiting for {}",
                        service.name,
                        service
                            .waiting_for
                            .as_ref()
                            .map_or_else(|| "?".to_string(), |w| w.to_string())
                    );
                }
            }
        }
        last = Some(snapshot);
        if done {
            let instances = if current.len() == selected.len() {
                String::new()
            } else {
                format!(" ({} instances)", current.len())
            };
            say!(
                "fleet: {} services{instances} {}",
                selected.len(),
                if healthy { "ready" } else { "started" }
            );
            return Ok(exit::SUCCESS);
        }
        if healthy && verdict == crate::readiness::Verdict::Failed {
            break;
        }
    }
    let mut report = String::from(if healthy {
        "fleet: not every service became healthy:\n"
    } else {
        "fleet: not every service started:\n"
    });
    if let Some(snapshot) = last {
        let fine = |service: &crate::event::ServiceSnapshot| {
            if healthy {
                service.status.state.is_ready()
            } else {
                service.status.state.is_up()
            }
        };
        report.push_str(&crate::readiness::laggard_report(
            &rows(&snapshot),
            fine,
            &manifest.log_dir(),
            crate::event::now_ms(),
        ));
    }
    Err(CliError::new(
        exit::WAIT_FAILED,
        report.trim_end().to_string(),
    ))
}
