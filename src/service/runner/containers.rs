//! The runner's container half: what starting a container instance needs (the engine,
//! a present image, free host ports, a probe from the host or the image's own
//! HEALTHCHECK) and image builds. Once started, a container is a
//! [`crate::runtime::Instance`] like a process: the runner signals, kills and cleans
//! it up without knowing which it is. Generations, backoff, probes and logs work
//! exactly as for processes.

use std::collections::HashMap;

use tokio::task::JoinHandle;

use crate::event::Generation;

use crate::health;
use crate::logs::{LineWriter, Stream};
use crate::manifest::{ContainerSpec, Probe, ServiceKind};
use crate::runtime::container::{ContainerError, ContainerRequest, Docker};
use crate::runtime::instance::{Instance, Started};
use crate::service::state::{BuildId, Input};

use super::{LiveBuild, ServiceRunner, SpawnFailure};

impl ServiceRunner {
    /// Starts a container instance with `env`, and its probe.
    pub(super) async fn start_container(
        &self,
        generation: Generation,
        container: &ContainerSpec,
        env: Vec<(String, String)>,
    ) -> Result<(Started, Option<JoinHandle<()>>), SpawnFailure> {
        let engine = self.project.engine().await.map_err(SpawnFailure::fatal)?;
        let docker = engine.docker.clone();
        let network = engine.network.clone();
        if let Some(busy) = self.first_busy_port(container.ports.iter().map(|mapping| mapping.host))
        {
            return Err(SpawnFailure::retry(busy));
        }
        let request = ContainerRequest {
            project: self.project.name.clone(),
            service: self.spec.name.clone(),
            instance: self.name().to_string(),
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
            healthcheck: container.healthcheck.clone(),
            init: container.init,
        };
        // No look at the image first: the create says when it is missing, and that
        // costs no round trip when it is there (every start but the first mistake).
        let started = match Instance::start_container(&docker, &request, self.log.clone()).await {
            Ok(started) => started,
            // Nothing builds it: trying again cannot help.
            Err(err @ ContainerError::ImageMissing { .. }) if container.build.is_none() => {
                return Err(SpawnFailure::fatal(err.to_string()));
            }
            Err(err) => return Err(SpawnFailure::retry(err.to_string())),
        };
        let Some(id) = started.instance.container_id().map(str::to_string) else {
            // start_container only ever makes a container instance.
            return Err(SpawnFailure::retry(
                "the engine started no container".into(),
            ));
        };
        let probe = self
            .container_probe(generation, &id, &docker, &request)
            .await;
        Ok((started, probe))
    }

    /// fleet's own probes run against the published ports from the host; `docker = true`
    /// follows the image's HEALTHCHECK as the engine reports it.
    async fn container_probe(
        &self,
        generation: Generation,
        id: &str,
        docker: &Docker,
        request: &ContainerRequest,
    ) -> Option<JoinHandle<()>> {
        let spec = self.spec.health.as_ref()?;
        if spec.probe == Probe::Docker {
            return Some(health::docker::start_docker(
                docker.clone(),
                id.to_string(),
                spec.interval,
                self.verdicts_to_inbox(generation),
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
                    if let Some(mapping) = published
                        && let Some(address) = docker.address_on(id, &request.network).await
                    {
                        setup.retarget_tcp(*port, address.to_string(), mapping.container);
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
