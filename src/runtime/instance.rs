//! One running instance of a service, whichever runtime runs it: a process group on
//! this machine or a container in the Docker engine.
//!
//! Owns: starting an instance (its boundary line in the log, copying its output into
//! the log, recording a process group in the journal), signalling, killing and
//! cleaning it up, and the environment an instance or a build gets. Must not decide
//! when any of this happens: the service runner decides, and does not need to know
//! which runtime it drives.
//!
//! # Theory of operation
//! An [`Instance`] exists only while something runs (or may still run): a start that
//! fails returns no instance, and [`Instance::cleanup`] consumes it, so nothing can
//! signal an instance that was cleaned up. Its end arrives apart, as an [`Exit`], so
//! the runner can wait for it in another task while it keeps the instance to signal.
//! - A process is its own process group, started with `FLEET_INSTANCE=<marker>`.
//!   Signals go to the group; a kill also reaches what escaped the group
//!   (`setsid`, double fork) and carries the marker; cleanup kills and waits until
//!   all of it is reaped, then strikes the group from the journal.
//! - A container is signalled and killed through the engine; cleanup lets its log
//!   stream deliver the last lines, then removes it in the background (removal ends
//!   the stream, so it must come after; nothing else needs to wait for it).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::container::{ContainerError, ContainerRequest, Docker};
use super::process::{self, ProcessRuntime, SpawnError, SpawnRequest, MARKER_VAR};
use super::reaper::Journal;
use crate::event::{ExitStatus, Generation};
use crate::logs::{ServiceLog, Stream};
use crate::manifest::{ServiceKind, ServiceSpec};

/// How long the exit of a process waits for its output pipes to drain, so the last
/// lines it printed land in the log before the "exited" line. A grandchild that keeps
/// the pipe open must not delay crash handling by more than this.
const DRAIN_GRACE: Duration = Duration::from_millis(20);

/// How long a stopped container's log stream may take to deliver its last lines
/// before the container is removed (removal ends the stream).
const LOG_DRAIN: Duration = Duration::from_secs(2);

/// The signal a container gets when asked for a number the OS does not know: the
/// engine takes names, and a stop must still stop.
const FALLBACK_SIGNAL: &str = "SIGTERM";

/// A live instance of a service, in one of the two runtimes.
pub enum Instance {
    Process(ProcessInstance),
    Container(ContainerInstance),
}

/// A process group fleet started; its pid is also its group id.
pub struct ProcessInstance {
    pid: u32,
    marker: String,
    journal: Journal,
    processes: ProcessRuntime,
}

/// A container fleet created and started.
pub struct ContainerInstance {
    id: String,
    docker: Docker,
    /// Copies the container's output into the log; ends when the container stops.
    logs: JoinHandle<()>,
}

/// A freshly started instance and its end.
pub struct Started {
    pub instance: Instance,
    pub exit: Exit,
}

/// The end of an instance, to wait for apart from the instance itself.
pub struct Exit {
    status: oneshot::Receiver<ExitStatus>,
    /// A process's output pumps, which may still hold its last lines when it exits.
    output: Vec<JoinHandle<()>>,
}

impl Exit {
    /// Resolves when the instance has ended, and for a process once its output has
    /// drained (for at most `DRAIN_GRACE`).
    pub async fn wait(self) -> ExitStatus {
        // The sender is dropped only when the reaper task or the engine handle is gone,
        // i.e. fleet is shutting down: report a kill so the machine still sees an exit.
        let status = self.status.await.unwrap_or(ExitStatus::Signal(9));
        if !self.output.is_empty() {
            let drained = async {
                for pump in self.output {
                    let _ = pump.await;
                }
            };
            let _ = tokio::time::timeout(DRAIN_GRACE, drained).await;
        }
        status
    }
}

impl Instance {
    /// Starts `request` in its own process group, records the group in `journal`,
    /// writes the generation's start line and copies its output into `log`.
    /// `marker` is the `FLEET_INSTANCE` value `request.env` carries.
    pub fn spawn_process(
        processes: &ProcessRuntime,
        request: &SpawnRequest,
        generation: Generation,
        marker: String,
        log: &Arc<ServiceLog>,
        journal: &Journal,
    ) -> Result<Started, SpawnError> {
        let spawned = processes.spawn(request)?;
        let pid = spawned.pid;
        journal.add(pid);
        // Before the pumps start, so the boundary line precedes the instance's output.
        log.write_fleet_line(&format!(
            "--- generation {generation} started (pid {pid}) ---"
        ));
        let stdout = tokio::spawn(log.clone().pump(spawned.stdout, Stream::Stdout));
        let stderr = tokio::spawn(log.clone().pump(spawned.stderr, Stream::Stderr));
        Ok(Started {
            instance: Instance::Process(ProcessInstance {
                pid,
                marker,
                journal: journal.clone(),
                processes: processes.clone(),
            }),
            exit: Exit {
                status: spawned.exit,
                output: vec![stdout, stderr],
            },
        })
    }

    /// Writes the generation's start line, then creates and starts the container and
    /// copies its output into `log`.
    pub async fn start_container(
        docker: &Docker,
        request: &ContainerRequest,
        log: Arc<ServiceLog>,
    ) -> Result<Started, ContainerError> {
        log.write_fleet_line(&format!(
            "--- generation {} starting (image {}) ---",
            request.generation, request.image
        ));
        let started = docker.start(request, log).await?;
        Ok(Started {
            instance: Instance::Container(ContainerInstance {
                id: started.id,
                docker: docker.clone(),
                logs: started.logs,
            }),
            exit: Exit {
                status: started.exit,
                output: Vec::new(),
            },
        })
    }

    /// The process group's id, for a process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Instance::Process(process) => Some(process.pid),
            Instance::Container(_) => None,
        }
    }

    /// The engine's id, for a container.
    pub fn container_id(&self) -> Option<&str> {
        match self {
            Instance::Process(_) => None,
            Instance::Container(container) => Some(&container.id),
        }
    }

    /// Sends the stop signal `signal` to the whole process group (followed by SIGCONT,
    /// so a stopped group can act on it), or to the container's main process. An
    /// instance that already ended is fine. The engine's answer is not awaited: the
    /// stop timer runs meanwhile, and the container's exit is what counts.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        match self {
            Instance::Process(process) => process::stop_group(process.pid, signal),
            Instance::Container(container) => {
                let name = nix::sys::signal::Signal::try_from(signal)
                    .map(|signal| signal.as_str())
                    .unwrap_or(FALLBACK_SIGNAL);
                let (docker, id) = (container.docker.clone(), container.id.clone());
                tokio::spawn(async move { docker.signal(&id, name).await });
                Ok(())
            }
        }
    }

    /// SIGKILLs the instance now: the process group and whatever escaped it carrying
    /// the instance's marker, or the container. Does not wait; [`Instance::cleanup`]
    /// does.
    pub fn kill(&self) {
        match self {
            Instance::Process(process) => {
                process
                    .processes
                    .kill_group_and_escaped(process.pid, &process.marker);
            }
            Instance::Container(container) => {
                let (docker, id) = (container.docker.clone(), container.id.clone());
                tokio::spawn(async move { docker.kill(&id).await });
            }
        }
    }

    /// The instance's main process is gone: takes everything it left with it. Kills
    /// and reaps the rest of a process group and its escapees, then strikes the group
    /// from the journal; lets a container's last output arrive, then has the engine
    /// remove it in the background ([`Docker::remove_in_background`]: the container
    /// no longer holds its ports, and [`Docker::removals_done`] waits for it).
    pub async fn cleanup(self) {
        match self {
            Instance::Process(process) => {
                process
                    .processes
                    .kill_instance(process.pid, &process.marker)
                    .await;
                process.journal.remove(process.pid);
            }
            Instance::Container(container) => {
                let _ = tokio::time::timeout(LOG_DRAIN, container.logs).await;
                container.docker.remove_in_background(&container.id);
            }
        }
    }
}

/// The environment of one of `spec`'s instances (`generation` given) or of its build
/// command (`None`), in project `project`.
///
/// A process inherits fleet's own environment (`base_env`, without what the service
/// sets itself and without socket-activation variables meant for fleet), then the
/// service's, `PORT` (its first port, else its socket's), and fleet's variables,
/// `FLEET_INSTANCE=<marker>` first. A container gets none of the host's environment,
/// only the service's, `PORT` (the container side of its first mapping) and fleet's
/// variables; no marker, since its processes live in the engine, not under fleet.
pub fn environment(
    spec: &ServiceSpec,
    project: &str,
    base_env: &[(String, String)],
    marker: &str,
    generation: Option<Generation>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = match &spec.kind {
        ServiceKind::Process(_) => base_env
            .iter()
            .filter(|(key, _)| {
                !spec.env.contains_key(key) && !key.starts_with("LISTEN_") && key != "NOTIFY_SOCKET"
            })
            .cloned()
            .collect(),
        ServiceKind::Container(_) => Vec::new(),
    };
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !spec.env.contains_key("PORT") {
        let port = match &spec.kind {
            ServiceKind::Process(_) => spec
                .ports
                .first()
                .copied()
                .or(spec.socket.as_ref().map(|socket| socket.port)),
            ServiceKind::Container(container) => {
                container.ports.first().map(|mapping| mapping.container)
            }
        };
        if let Some(port) = port {
            env.push(("PORT".into(), port.to_string()));
        }
    }
    if matches!(spec.kind, ServiceKind::Process(_)) {
        env.push((MARKER_VAR.into(), marker.to_string()));
    }
    env.push(("FLEET_SERVICE".into(), spec.name.clone()));
    env.push(("FLEET_PROJECT".into(), project.to_string()));
    if let Some(generation) = generation {
        env.push(("FLEET_GENERATION".into(), generation.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::logs::LogHub;
    use crate::runtime::container::test_support::{
        container_exists, docker_or_skip, log_lines, request, test_image, unique_project, Cleanup,
        TestResult, DEADLINE,
    };

    fn service(source: &str, name: &str) -> ServiceSpec {
        let manifest = match crate::manifest::parse(Path::new("fleet.toml"), source) {
            Ok(manifest) => manifest,
            Err(err) => panic!("the test manifest is invalid:\n{}", err.render(false)),
        };
        match manifest.service(name) {
            Some(spec) => spec.clone(),
            None => panic!("the test manifest has no service {name}"),
        }
    }

    fn pairs(env: &[(&str, &str)]) -> Vec<(String, String)> {
        env.iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn base_env() -> Vec<(String, String)> {
        pairs(&[
            ("HOME", "/home/someone"),
            ("MODE", "from-fleet"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "1"),
            ("NOTIFY_SOCKET", "/run/notify"),
        ])
    }

    #[test]
    fn a_process_inherits_fleets_environment_then_its_own_then_fleets_variables() {
        let spec = service(
            "[services.web]\ncommand = \"web\"\nports = [7001, 7002]\nenv = { MODE = \"mine\" }\n",
            "web",
        );
        let instance = environment(&spec, "shop", &base_env(), "m-web-3", Some(Generation(3)));
        assert_eq!(
            instance,
            pairs(&[
                ("HOME", "/home/someone"),
                ("MODE", "mine"),
                ("PORT", "7001"),
                ("FLEET_INSTANCE", "m-web-3"),
                ("FLEET_SERVICE", "web"),
                ("FLEET_PROJECT", "shop"),
                ("FLEET_GENERATION", "3"),
            ])
        );
        let build = environment(&spec, "shop", &base_env(), "m-web-build1", None);
        assert_eq!(
            build,
            pairs(&[
                ("HOME", "/home/someone"),
                ("MODE", "mine"),
                ("PORT", "7001"),
                ("FLEET_INSTANCE", "m-web-build1"),
                ("FLEET_SERVICE", "web"),
                ("FLEET_PROJECT", "shop"),
            ]),
            "a build has no generation"
        );
    }

    #[test]
    fn a_process_with_only_a_socket_gets_the_sockets_port_unless_it_sets_port() {
        let spec = service("[services.web]\ncommand = \"web\"\nsocket = 7003\n", "web");
        let env = environment(&spec, "shop", &[], "m", Some(Generation(1)));
        assert!(
            env.contains(&("PORT".to_string(), "7003".to_string())),
            "{env:?}"
        );
        let spec = service(
            "[services.web]\ncommand = \"web\"\nsocket = 7003\nenv = { PORT = \"9\" }\n",
            "web",
        );
        let env = environment(&spec, "shop", &[], "m", Some(Generation(1)));
        let ports: Vec<_> = env.iter().filter(|(key, _)| key == "PORT").collect();
        assert_eq!(ports, [&("PORT".to_string(), "9".to_string())]);
    }

    #[tokio::test]
    async fn a_container_instance_logs_its_start_is_signalled_by_number_and_removed_by_cleanup(
    ) -> TestResult {
        let Some(docker) = docker_or_skip(
            "a_container_instance_logs_its_start_is_signalled_by_number_and_removed_by_cleanup",
        )
        .await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("instance");
        let _cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "web", 0, 1, LogHub::default())?;
        let request = request(&project, "web", 4, &network, &["--sleep-forever"]);
        let Started { instance, exit } =
            Instance::start_container(&docker, &request, log.clone()).await?;
        assert_eq!(instance.pid(), None);
        let id = instance
            .container_id()
            .ok_or("a started container has no id")?
            .to_string();
        assert!(container_exists(&docker, &id).await);
        let first = log_lines(&log)?
            .into_iter()
            .next()
            .ok_or("the log is empty")?;
        assert_eq!(first.stream, Stream::Fleet);
        assert_eq!(
            first.text,
            format!("--- generation 4 starting (image {}) ---", request.image)
        );
        // The helper is the container's pid 1, which ignores SIGTERM unless it handles
        // it; SIGKILL ends it whatever it does, and proves the number became a name.
        instance.signal(nix::sys::signal::Signal::SIGKILL as i32)?;
        let status = tokio::time::timeout(DEADLINE, exit.wait()).await?;
        assert_eq!(status, ExitStatus::Signal(9));
        // Killing and signalling an instance that already ended is quiet.
        instance.kill();
        instance.signal(nix::sys::signal::Signal::SIGTERM as i32)?;
        instance.cleanup().await;
        docker.removals_done().await;
        assert!(!container_exists(&docker, &id).await, "not removed");
        Ok(())
    }

    #[test]
    fn a_container_gets_its_own_environment_and_fleets_variables_but_not_the_hosts() {
        let spec = service(
            "[services.db]\nimage = \"postgres:16\"\nports = [\"6380:5432\", 6381]\nenv = { MODE = \"mine\" }\n",
            "db",
        );
        let env = environment(&spec, "shop", &base_env(), "m-db-2", Some(Generation(2)));
        assert_eq!(
            env,
            pairs(&[
                ("MODE", "mine"),
                ("PORT", "5432"),
                ("FLEET_SERVICE", "db"),
                ("FLEET_PROJECT", "shop"),
                ("FLEET_GENERATION", "2"),
            ])
        );
    }
}
