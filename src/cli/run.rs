//! `run` and `exec`: command-line glue. `run`'s orchestration is [`crate::run`];
//! `exec` runs a command in a service's context: for a process, exec(2) into it with
//! the service's folder and environment; for a container, through the engine, inside
//! the running container.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::Path;

use super::{exit, small_runtime, snapshot_of, supervisor_runtime, CliError, ExecArgs, RunArgs};
use crate::control::client::Client;
use crate::event::ReplicaId;
use crate::manifest::{self, Manifest, ServiceKind, ServiceSpec};
use crate::run::{RunError, RunOptions};

impl From<RunError> for CliError {
    fn from(err: RunError) -> CliError {
        match err {
            RunError::Manifest(err) => err.into(),
            RunError::Invalid(_) => CliError::new(exit::INVALID, err.to_string()),
            RunError::Place(_) | RunError::Setup(_) => {
                CliError::new(exit::FAILURE, err.to_string())
            }
        }
    }
}

/// `fleet run`.
pub(super) fn run(path: &Path, cwd: &Path, args: RunArgs) -> Result<i32, CliError> {
    let options = RunOptions {
        manifest: path.to_path_buf(),
        activation: super::up::activation(&args.profiles, &args.services),
        command: args.command,
        cwd: cwd.to_path_buf(),
        wait_timeout: args.wait_timeout,
        timeout: args.timeout,
        artifacts: args.artifacts,
        junit: args.junit,
        fail_on_restart: args.fail_on_restart,
        keep_on_failure: args.keep_on_failure,
        no_build: args.no_build,
        // Before the runtime starts its threads: a forked keeper is a fraction of the
        // size.
        keeper: crate::runtime::reaper::PendingKeeper::fork(),
    };
    let runtime = supervisor_runtime()?;
    let code = runtime.block_on(crate::run::run(options))?;
    Ok(code)
}

/// `fleet exec SERVICE -- CMD`.
pub(super) fn exec(path: &Path, args: ExecArgs) -> Result<i32, CliError> {
    let manifest = manifest::load(path)?;
    let (spec, replica) = resolve(&manifest, &args.service)?;
    match &spec.kind {
        ServiceKind::Process(process) => {
            let mut env = crate::runtime::instance::environment(
                &spec.replica(replica - 1),
                &manifest.project.name,
                &std::env::vars().collect::<Vec<_>>(),
                "",
                None,
            );
            // A one-off command is not an instance: no marker, so stopping the service
            // does not end it.
            env.retain(|(key, _)| key != crate::runtime::process::MARKER_VAR);
            env.push(("FLEET_REPLICA".into(), (replica - 1).to_string()));
            env.push(("FLEET_REPLICAS".into(), spec.replicas.to_string()));
            let Some((program, arguments)) = args.command.split_first() else {
                return Err(CliError::new(
                    exit::INVALID,
                    "fleet: exec needs a command after --",
                ));
            };
            let err = std::process::Command::new(program)
                .args(arguments)
                .current_dir(&process.cwd)
                .env_clear()
                .envs(env)
                .exec();
            // exec only returns on failure.
            let code = match err.kind() {
                std::io::ErrorKind::NotFound => crate::run::EXIT_NOT_FOUND,
                _ => crate::run::EXIT_NOT_EXECUTABLE,
            };
            Err(CliError::new(
                code,
                format!(
                    "fleet: cannot run `{program}` for `{}`: {err}",
                    args.service
                ),
            ))
        }
        ServiceKind::Container(_) => {
            let runtime = small_runtime()?;
            let code = runtime.block_on(exec_in_container(&manifest, &args));
            // The stdin reader is a blocking read that may never return.
            runtime.shutdown_background();
            code
        }
    }
}

/// The service and the replica (1-based) `name` means: `web` (replica 1) or `web.2`.
fn resolve<'m>(manifest: &'m Manifest, name: &str) -> Result<(&'m ServiceSpec, u32), CliError> {
    if let Some(spec) = manifest.service(name) {
        return Ok((spec, 1));
    }
    if let Some((service, number)) = name.rsplit_once('.')
        && let (Some(spec), Ok(replica)) = (manifest.service(service), number.parse::<u32>())
    {
        if (1..=spec.replicas.max(1)).contains(&replica) {
            return Ok((spec, replica));
        }
        return Err(CliError::new(
            exit::INVALID,
            format!(
                "fleet: `{service}` has {} replica{}: {service}.1 to {service}.{}",
                spec.replicas,
                if spec.replicas == 1 { "" } else { "s" },
                spec.replicas
            ),
        ));
    }
    let hint = crate::manifest::diagnostic::suggest(
        name,
        manifest.services.iter().map(|spec| spec.name.as_str()),
    )
    .map(|s| format!(" (did you mean `{s}`?)"))
    .unwrap_or_default();
    Err(CliError::new(
        exit::INVALID,
        format!("fleet: unknown service `{name}`{hint}"),
    ))
}

/// Runs the command in the service's running container; returns its exit code.
async fn exec_in_container(manifest: &Manifest, args: &ExecArgs) -> Result<i32, CliError> {
    let mut client = Client::connect(&manifest.path).await?;
    let snapshot = snapshot_of(&mut client).await?;
    let (spec, replica) = resolve(manifest, &args.service)?;
    let row_name = ReplicaId::new(spec.name.as_str(), replica).display_name(spec.replicas > 1);
    let row = snapshot.service(&row_name).ok_or_else(|| {
        CliError::new(
            exit::FAILURE,
            format!("fleet: `{row_name}` is not part of the running fleet"),
        )
    })?;
    let container = match (&row.status.container, row.status.state.is_up()) {
        (Some(container), true) => container.clone(),
        _ => {
            return Err(CliError::new(
                exit::FAILURE,
                format!(
                    "fleet: `{row_name}` has no running container (it is {})",
                    row.status.state
                ),
            ));
        }
    };
    let docker = crate::runtime::container::Docker::connect()
        .await
        .map_err(|err| CliError::new(exit::FAILURE, format!("fleet: {err}")))?;
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let size = tty.then(|| crossterm::terminal::size().ok()).flatten();
    let session = docker
        .exec_start(&container, &args.command, tty, size)
        .await
        .map_err(|err| CliError::new(exit::FAILURE, format!("fleet: {err}")))?;
    let id = session.id().to_string();
    let raw = tty.then(RawMode::enable).flatten();
    let resizes = tty.then(|| {
        let docker = docker.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Ok(size) = crossterm::terminal::size() {
                    docker.exec_resize(&id, size).await;
                }
            }
        })
    });
    session
        .pump(tokio::io::stdin(), tokio::io::stdout(), tokio::io::stderr())
        .await;
    drop(raw);
    if let Some(resizes) = resizes {
        resizes.abort();
    }
    let code = docker
        .exec_exit_code(&id)
        .await
        .map_err(|err| CliError::new(exit::FAILURE, format!("fleet: {err}")))?;
    Ok(i32::try_from(code).unwrap_or(exit::FAILURE))
}

/// The terminal in raw mode for as long as this lives: keys go to the container's TTY
/// as they are typed, Ctrl-C included.
struct RawMode;

impl RawMode {
    fn enable() -> Option<RawMode> {
        crossterm::terminal::enable_raw_mode()
            .ok()
            .map(|()| RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

#[cfg(test)]
mod tests {
    use super::exit;

    #[test]
    fn the_codes_fleet_run_decides_are_the_documented_ones() {
        use crate::run::exit as run;
        assert_eq!(run::SUCCESS, exit::SUCCESS);
        assert_eq!(run::FAILURE, exit::FAILURE);
        assert_eq!(run::INVALID, exit::INVALID);
        assert_eq!(run::START_FAILED, exit::START_FAILED);
        assert_eq!(run::WAIT_FAILED, exit::WAIT_FAILED);
    }
}
