//! The check after teardown: that nothing the run started is left. Processes are
//! found by the run's `FLEET_INSTANCE` marker (every instance, every descendant that
//! kept its environment); Docker objects by the run's project label (containers,
//! networks, named volumes) and by name (every volume fleet saw mounted in the run's
//! containers, anonymous ones included). Whatever is found is reported and removed.

use super::summary::{LeftProcess, Teardown};
use crate::runtime::container::Docker;
use crate::runtime::process::{all_with_marker, command_line};

/// Looks for, reports and removes what is left of the run.
pub(super) async fn check(
    run_marker: &str,
    docker: Option<&Docker>,
    run_project: &str,
    volumes: &[String],
) -> Teardown {
    let mut teardown = Teardown {
        checked: vec!["processes".into()],
        ..Teardown::default()
    };
    for pid in all_with_marker(run_marker) {
        teardown.processes.push(LeftProcess {
            pid: pid as u32,
            command: command_line(pid),
        });
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Some(docker) = docker {
        teardown
            .checked
            .extend(["containers".into(), "networks".into(), "volumes".into()]);
        match docker.project_objects(run_project, volumes).await {
            Ok(objects) => {
                if !objects.is_empty() {
                    docker.remove_objects(&objects).await;
                }
                teardown.containers = objects
                    .containers
                    .into_iter()
                    .map(|(id, name)| format!("{name} ({})", crate::event::short_id(&id)))
                    .collect();
                teardown.networks = objects.networks;
                teardown.volumes = objects.volumes;
            }
            Err(err) => teardown.errors.push(err.to_string()),
        }
    }
    teardown.clean = !teardown.found_anything() && teardown.errors.is_empty();
    teardown
}
