//! The runner's container half: the same effects as for processes, carried out
//! through the Docker engine. Generations, backoff, probes and logs work exactly as
//! for processes; only the calls differ.

use std::collections::HashMap;
use std::time::Duration;

use crate::event::{ExitStatus, Generation};

use crate::health::{self, Verdict};
use crate::logs::{LineWriter, Stream};
use crate::manifest::{Probe, ServiceKind};
use crate::runtime::container::ContainerRequest;
use crate::runtime::ports;
use crate::service::state::{BuildId, Input};

use super::{LiveBuild, LiveInstance, LiveKind, ServiceRunner};

/// How long a stopped container's log stream may take to deliver its last lines
/// before the container is removed (removal ends the stream).
const LOG_DRAIN: Duration = Duration::from_secs(2);

impl ServiceRunner {
    pub(super) async fn spawn_container(&mut self, generation: Generation) {
        match self.try_spawn_container(generation).await {
            Ok(()) => {}
            Err((reason, retry)) => {
                let _ = self.inbox.send(Input::SpawnFailed {
                    generation,
                    reason,
                    retry,
                });
            }
        }
    }

    /// Returns the failure and whether trying again could help.
    async fn try_spawn_container(&mut self, generation: Generation) -> Result<(), (String, bool)> {
        let ServiceKind::Container(container) = &self.spec.kind else {
            return Err(("not a container service".into(), false));
        };
        let container = container.clone();
        let engine = self.project.engine().await.map_err(|err| (err, false))?;
        let docker = engine.docker.clone();
        let network = engine.network.clone();
        if container.build.is_none() {
            match docker.image_present(&container.image).await {
                Ok(true) => {}
                Ok(false) => {
                    let err = crate::runtime::container::ContainerError::ImageMissing {
                        image: container.image.clone(),
                    };
                    return Err((err.to_string(), false));
                }
                Err(err) => return Err((err.to_string(), true)),
            }
        }
        if self.instances.is_empty() {
            for mapping in &container.ports {
                if let Err(owner) = ports::check_free(mapping.host) {
                    return Err((ports::describe_busy(mapping.host, &owner), true));
                }
            }
        }
        let mut env: Vec<(String, String)> = self
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !self.spec.env.contains_key("PORT") {
            if let Some(mapping) = container.ports.first() {
                env.push(("PORT".into(), mapping.container.to_string()));
            }
        }
        env.push(("FLEET_SERVICE".into(), self.spec.name.clone()));
        env.push(("FLEET_PROJECT".into(), self.project.name.clone()));
        env.push(("FLEET_GENERATION".into(), generation.to_string()));
        let request = ContainerRequest {
            project: self.project.name.clone(),
            service: self.spec.name.clone(),
            generation: generation.0,
            run: self.project.run_id.clone(),
            image: container.image.clone(),
            command: container.command.clone(),
            env,
            ports: container.ports.clone(),
            volumes: container.volumes.clone(),
            network,
            stop_signal: self.spec.stop_signal.name.to_string(),
            stop_timeout: self.spec.stop_timeout,
        };
        self.log.write_fleet_line(&format!(
            "--- generation {generation} starting (image {}) ---",
            container.image
        ));
        let started = docker
            .start(&request, self.log.clone())
            .await
            .map_err(|err| (err.to_string(), true))?;
        let id = started.id.clone();
        let inbox = self.inbox.clone();
        let exit = started.exit;
        tokio::spawn(async move {
            // A dropped sender means the engine handle is gone (shutdown): report a kill.
            let status = exit.await.unwrap_or(ExitStatus::Signal(9));
            let _ = inbox.send(Input::Exited { generation, status });
        });
        let probe = self
            .container_probe(generation, &id, &docker, &request)
            .await;
        self.instances.insert(
            generation,
            LiveInstance {
                kind: LiveKind::Container {
                    id: id.clone(),
                    logs: started.logs,
                },
                probe,
            },
        );
        self.started_at_ms
            .insert(generation, crate::event::now_ms());
        let _ = self.inbox.send(Input::Spawned {
            generation,
            pid: None,
            container: Some(id),
        });
        Ok(())
    }

    /// fleet's own probes run against the published ports from the host; `docker = true`
    /// follows the image's HEALTHCHECK as the engine reports it.
    async fn container_probe(
        &self,
        generation: Generation,
        id: &str,
        docker: &crate::runtime::container::Docker,
        request: &ContainerRequest,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let spec = self.spec.health.as_ref()?;
        let inbox = self.inbox.clone();
        if spec.probe == Probe::Docker {
            return Some(health::docker::start_docker(
                docker.clone(),
                id.to_string(),
                spec.interval,
                move |verdict, reason| {
                    let input = match verdict {
                        Verdict::Healthy => Input::Health {
                            generation,
                            healthy: true,
                            reason,
                        },
                        Verdict::Unhealthy => Input::Health {
                            generation,
                            healthy: false,
                            reason,
                        },
                        Verdict::Failing => Input::ProbeFailing { generation, reason },
                    };
                    let _ = inbox.send(input);
                },
            ));
        }
        // Probes run on the host, so an `exec` probe runs like a process service would.
        let setup = match self.prepare_probe(
            spec,
            generation,
            self.project.root.clone(),
            self.project.base_env.clone(),
        ) {
            Ok(mut setup) => {
                setup.behind_proxy();
                // A TCP probe of a published port goes to the container itself: Docker's
                // proxy accepts there even when nothing listens in the container.
                if let Probe::Tcp { port, .. } = &spec.probe {
                    let published = request.ports.iter().find(|mapping| mapping.host == *port);
                    if let Some(mapping) = published {
                        if let Some(address) = docker.address_on(id, &request.network).await {
                            setup.retarget_tcp(*port, address.to_string(), mapping.container);
                        }
                    }
                }
                setup
            }
            Err(err) => {
                self.log
                    .write_fleet_line(&format!("cannot prepare health check: {err}"));
                return None;
            }
        };
        Some(self.start_probe(setup, generation))
    }

    /// The engine, if it was reached (a container instance exists only then).
    fn docker(&self) -> Option<crate::runtime::container::Docker> {
        match self.project.engine.get() {
            Some(Ok(engine)) => Some(engine.docker.clone()),
            _ => None,
        }
    }

    pub(super) fn signal_container(&self, id: &str, signal: i32) {
        let Some(docker) = self.docker() else { return };
        let id = id.to_string();
        let name = nix::sys::signal::Signal::try_from(signal)
            .map(|s| s.as_str())
            .unwrap_or("SIGTERM");
        // The engine call may take a moment; the stop timer runs meanwhile.
        tokio::spawn(async move { docker.signal(&id, name).await });
    }

    pub(super) fn kill_container(&self, id: &str) {
        let Some(docker) = self.docker() else { return };
        let id = id.to_string();
        tokio::spawn(async move { docker.kill(&id).await });
    }

    pub(super) async fn remove_container(&mut self, id: String, logs: tokio::task::JoinHandle<()>) {
        let _ = tokio::time::timeout(LOG_DRAIN, logs).await;
        if let Some(Ok(engine)) = self.project.engine.get() {
            engine.docker.remove(&id).await;
        }
    }

    pub(super) fn start_image_build(&mut self, build: BuildId) {
        let ServiceKind::Container(container) = &self.spec.kind else {
            return;
        };
        let Some(image_build) = container.build.clone() else {
            let _ = self.inbox.send(Input::BuildFinished {
                build,
                result: Ok(()),
            });
            return;
        };
        let tag = container.image.clone();
        let project = self.project.clone();
        let log = self.log.clone();
        let inbox = self.inbox.clone();
        log.write_fleet_line(&format!(
            "--- image build started: {tag} from {} ---",
            image_build.context.display()
        ));
        let task = tokio::spawn(async move {
            let result = async {
                let engine = project.engine().await?;
                // No image labels: the classic builder turns each into a LABEL step
                // (about a second each here), and containers a user starts from the
                // image by hand would inherit them. The image's tag names it anyway.
                let labels: HashMap<String, String> = HashMap::new();
                let mut progress = LineWriter::new(log.clone(), Stream::Build);
                let outcome = engine
                    .docker
                    .build_image(&image_build, &tag, labels, |line: &str| {
                        progress.push(line.as_bytes());
                        if !line.ends_with('\n') {
                            progress.push(b"\n");
                        }
                    })
                    .await
                    .map_err(|err| err.to_string());
                progress.finish();
                outcome
            }
            .await;
            let _ = inbox.send(Input::BuildFinished { build, result });
        });
        self.builds.insert(build, LiveBuild::Image(task));
    }
}
