//! The engine objects around containers: the project's network, its named volumes,
//! and the containers a run or a crashed run left behind, all found by label.
//!
//! Owns the startup sweep and the keeper's blocking removal. Must never list or remove
//! an object without filtering by fleet's labels: a user's own containers, networks
//! and volumes are not fleet's to touch.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions,
};

use super::{
    api_error, connect_client, docker_host_from_env, network_name, report, report_unless_gone,
    status_code, ContainerError, ContainerRequest, Docker, LABEL_GENERATION, LABEL_PROJECT,
    LABEL_RUN,
};

/// How long the keeper's blocking removal may take in all before it gives up.
const KEEPER_DEADLINE: Duration = Duration::from_secs(60);
/// How long the startup sweep waits for the containers it removed to be gone: a forced
/// removal kills the container and deletes its layer, which takes a few hundred
/// milliseconds, longer on a busy machine.
const SWEEP_SETTLE: Duration = Duration::from_secs(20);
/// How often the sweep looks whether a removed container is gone.
const SWEEP_POLL: Duration = Duration::from_millis(20);

impl Docker {
    /// The project's bridge network `fleet-<project>`, created (labelled) if missing.
    /// Returns its name, to put in [`ContainerRequest::network`].
    pub async fn ensure_network(&self, project: &str) -> Result<String, ContainerError> {
        let name = network_name(project);
        if self.network_exists(&name).await? {
            return Ok(name);
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([(
                LABEL_PROJECT.to_string(),
                project.to_string(),
            )])),
            ..Default::default()
        };
        match self.client.create_network(request).await {
            Ok(_) => Ok(name),
            // Created meanwhile by someone else (another fleet command of the project).
            Err(err) if status_code(&err) == Some(409) => Ok(name),
            Err(err) => Err(api_error(&format!("cannot create network {name}"), &err)),
        }
    }

    async fn network_exists(&self, name: &str) -> Result<bool, ContainerError> {
        // The engine's `name` filter matches substrings, so check the exact name.
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([(
                "name".to_string(),
                vec![name.to_string()],
            )])),
        };
        let networks = self
            .client
            .list_networks(Some(options))
            .await
            .map_err(|err| api_error("cannot list networks", &err))?;
        Ok(networks
            .iter()
            .any(|network| network.name.as_deref() == Some(name)))
    }

    /// Creates the named volumes the request uses that do not exist yet, labelled with
    /// the project so [`Docker::remove_volumes`] can find them. Existing volumes are
    /// used as they are, and never removed by fleet unless it created them.
    pub(super) async fn ensure_named_volumes(
        &self,
        request: &ContainerRequest,
    ) -> Result<(), ContainerError> {
        for volume in &request.volumes {
            let Some(name) = named_volume(volume) else {
                continue;
            };
            match self.client.inspect_volume(name).await {
                Ok(_) => continue,
                Err(err) if status_code(&err) == Some(404) => {}
                Err(err) => {
                    return Err(api_error(&format!("cannot inspect volume {name}"), &err));
                }
            }
            let options = VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(HashMap::from([(
                    LABEL_PROJECT.to_string(),
                    request.project.clone(),
                )])),
                ..Default::default()
            };
            self.client
                .create_volume(options)
                .await
                .map_err(|err| api_error(&format!("cannot create volume {name}"), &err))?;
        }
        Ok(())
    }

    /// Removes every container labelled with `project`, except those of `keep_run`:
    /// the startup sweep after a crash. Unlabelled containers are never listed, so
    /// never touched. Returns how many were removed.
    pub async fn sweep(
        &self,
        project: &str,
        keep_run: Option<&str>,
    ) -> Result<usize, ContainerError> {
        let containers =
            list_labelled(&self.client, &[format!("{LABEL_PROJECT}={project}")]).await?;
        let mut removed = Vec::new();
        for (id, labels) in containers {
            // Only containers fleet created carry a run: a user's `docker run` of an
            // image fleet built may inherit the image's labels, never the run's.
            let Some(run) = labels.get(LABEL_RUN) else {
                continue;
            };
            if !labels.contains_key(LABEL_GENERATION) || keep_run == Some(run.as_str()) {
                continue;
            }
            self.remove(&id).await;
            removed.push(id);
        }
        // A removal the engine already had in progress (the dying run's keeper races
        // this sweep after a `kill -9` of the supervisor) is refused with 409 at once,
        // while the container still holds its published ports: wait until every one is
        // really gone, so the preflight that follows does not find its ports taken.
        let deadline = tokio::time::Instant::now() + SWEEP_SETTLE;
        for id in &removed {
            while container_exists_at(&self.client, id).await {
                if tokio::time::Instant::now() >= deadline {
                    crate::note!(
                        "fleet: Docker: container {} is still being removed after {}s",
                        short_id(id),
                        SWEEP_SETTLE.as_secs()
                    );
                    break;
                }
                tokio::time::sleep(SWEEP_POLL).await;
            }
        }
        Ok(removed.len())
    }

    /// Removes the project's networks (those labelled with it). A network still in
    /// use by a container that is not fleet's stays, with a message.
    pub async fn remove_network(&self, project: &str) {
        remove_networks_of(&self.client, project).await;
    }

    /// Removes the named volumes fleet created for the project (those labelled with
    /// it). A volume still in use stays, with a message.
    pub async fn remove_volumes(&self, project: &str) {
        remove_volumes_of(&self.client, project).await;
    }

    /// The volumes mounted in a container, named and anonymous, by name. Empty when
    /// the container is already gone or the engine does not answer.
    pub async fn volumes_of(&self, id: &str) -> Vec<String> {
        let Ok(container) = self
            .client
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        else {
            return Vec::new();
        };
        container
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|mount| mount.typ.as_deref() == Some("volume"))
            .filter_map(|mount| mount.name)
            .collect()
    }

    /// What exists of `project`: its containers (running or not; `name (id)`), its
    /// networks and its labelled volumes, and which of `volumes` (names fleet saw
    /// mounted) still exist. Labels alone decide what is the project's.
    pub async fn project_objects(
        &self,
        project: &str,
        volumes: &[String],
    ) -> Result<ProjectObjects, ContainerError> {
        let label = format!("{LABEL_PROJECT}={project}");
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_string(), vec![label.clone()])])),
            ..Default::default()
        };
        let containers = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|err| api_error("cannot list containers", &err))?
            .into_iter()
            .filter_map(|container| {
                let id = container.id?;
                let name = container
                    .names
                    .and_then(|names| names.into_iter().next())
                    .unwrap_or_default();
                Some((id, name.trim_start_matches('/').to_string()))
            })
            .collect();
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([("label".to_string(), vec![label.clone()])])),
        };
        let networks = self
            .client
            .list_networks(Some(options))
            .await
            .map_err(|err| api_error("cannot list networks", &err))?
            .into_iter()
            .filter_map(|network| network.name)
            .collect();
        let options = ListVolumesOptions {
            filters: Some(HashMap::from([("label".to_string(), vec![label])])),
        };
        let mut found: Vec<String> = self
            .client
            .list_volumes(Some(options))
            .await
            .map_err(|err| api_error("cannot list volumes", &err))?
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|volume| volume.name)
            .collect();
        for name in volumes {
            if found.contains(name) {
                continue;
            }
            match self.client.inspect_volume(name).await {
                Ok(_) => found.push(name.clone()),
                Err(err) if status_code(&err) == Some(404) => {}
                Err(err) => return Err(api_error(&format!("cannot inspect volume {name}"), &err)),
            }
        }
        Ok(ProjectObjects {
            containers,
            networks,
            volumes: found,
        })
    }

    /// Removes what [`Docker::project_objects`] found: containers (with their anonymous
    /// volumes), then networks, then volumes.
    pub async fn remove_objects(&self, objects: &ProjectObjects) {
        for (id, _) in &objects.containers {
            remove_container(&self.client, id).await;
        }
        for network in &objects.networks {
            if let Err(err) = self.client.remove_network(network).await {
                report_unless_gone("remove network", network, &err);
            }
        }
        for volume in &objects.volumes {
            if let Err(err) = self
                .client
                .remove_volume(volume, Some(RemoveVolumeOptions { force: true }))
                .await
            {
                report_unless_gone("remove volume", volume, &err);
            }
        }
    }
}

/// A project's Docker objects, as [`Docker::project_objects`] found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectObjects {
    /// `(id, name)`.
    pub containers: Vec<(String, String)>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

impl ProjectObjects {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }
}

async fn remove_networks_of(client: &bollard::Docker, project: &str) {
    let options = ListNetworksOptions {
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_PROJECT}={project}")],
        )])),
    };
    let networks = match client.list_networks(Some(options)).await {
        Ok(networks) => networks,
        Err(err) => return report("list networks of", project, &err),
    };
    for network in networks {
        let Some(id) = network.id else { continue };
        if let Err(err) = client.remove_network(&id).await {
            report_unless_gone(
                "remove network",
                network.name.as_deref().unwrap_or(&id),
                &err,
            );
        }
    }
}

async fn remove_volumes_of(client: &bollard::Docker, project: &str) {
    let options = ListVolumesOptions {
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_PROJECT}={project}")],
        )])),
    };
    let volumes = match client.list_volumes(Some(options)).await {
        Ok(listing) => listing.volumes.unwrap_or_default(),
        Err(err) => return report("list volumes of", project, &err),
    };
    for volume in volumes {
        if let Err(err) = client
            .remove_volume(&volume.name, Some(RemoveVolumeOptions { force: false }))
            .await
        {
            report_unless_gone("remove volume", &volume.name, &err);
        }
    }
}

/// For the keeper, which has no tokio runtime: force-removes the containers of one
/// supervisor run and, when the project was the run's own (`ephemeral`), the
/// project's network and named volumes after them. Must not be called from inside a
/// tokio runtime. Gives up after a deadline, so a hung engine cannot keep the keeper
/// alive.
pub fn remove_run_containers_blocking(
    project: &str,
    run: &str,
    ephemeral: bool,
) -> Result<usize, ContainerError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| ContainerError::Api(format!("cannot start a runtime: {err}")))?;
    runtime.block_on(async {
        let removal = async {
            // No event subscription: the keeper only removes.
            let (client, _) = connect_client(docker_host_from_env()).await?;
            let containers = list_labelled(
                &client,
                &[
                    format!("{LABEL_PROJECT}={project}"),
                    format!("{LABEL_RUN}={run}"),
                ],
            )
            .await?;
            for (id, _) in &containers {
                remove_container(&client, id).await;
            }
            if ephemeral {
                remove_networks_of(&client, project).await;
                remove_volumes_of(&client, project).await;
            }
            Ok(containers.len())
        };
        tokio::time::timeout(KEEPER_DEADLINE, removal)
            .await
            .unwrap_or_else(|_| {
                Err(ContainerError::Api(format!(
                    "removing the containers of run {run} took more than {}s",
                    KEEPER_DEADLINE.as_secs()
                )))
            })
    })
}

/// Ids and labels of all containers (running or not) carrying every label filter.
async fn list_labelled(
    client: &bollard::Docker,
    label_filters: &[String],
) -> Result<Vec<(String, HashMap<String, String>)>, ContainerError> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_string(),
            label_filters.to_vec(),
        )])),
        ..Default::default()
    };
    let containers = client
        .list_containers(Some(options))
        .await
        .map_err(|err| api_error("cannot list containers", &err))?;
    Ok(containers
        .into_iter()
        .filter_map(|container| Some((container.id?, container.labels.unwrap_or_default())))
        .collect())
}

/// Whether the engine still knows the container (a removal in progress included). An
/// engine that does not answer counts as gone: there is nothing to wait for then.
async fn container_exists_at(client: &bollard::Docker, id: &str) -> bool {
    client
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .is_ok()
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

pub(super) async fn remove_container(client: &bollard::Docker, id: &str) {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        link: false,
    };
    if let Err(err) = client.remove_container(id, Some(options)).await {
        report_unless_gone("remove", id, &err);
    }
}

/// The volume name of a `name:container[:ro]` entry; `None` for a bind (absolute host
/// path) or an anonymous volume (no colon).
pub(super) fn named_volume(spec: &str) -> Option<&str> {
    let (source, _) = spec.split_once(':')?;
    (!source.is_empty() && !source.starts_with('/')).then_some(source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{CreateContainerOptions, InspectContainerOptions};

    use super::super::container_name;
    use super::super::test_support::*;
    use crate::event::ExitStatus;
    use crate::logs::{LogHub, ServiceLog};
    use crate::manifest::PortMapping;

    #[test]
    fn volumes_named_or_bound() {
        assert_eq!(named_volume("pgdata:/var/lib/postgresql"), Some("pgdata"));
        assert_eq!(named_volume("cache:/cache:ro"), Some("cache"));
        assert_eq!(named_volume("/srv/data:/data"), None);
        assert_eq!(named_volume("/anonymous"), None);
    }

    #[tokio::test]
    async fn sweep_removes_only_the_projects_labelled_containers() -> TestResult {
        let Some(docker) =
            docker_or_skip("sweep_removes_only_the_projects_labelled_containers").await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("sweep");
        let mut cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "svc", 0, 1, LogHub::default())?;

        let mut old_run = request(&project, "svc", 1, &network, &["--sleep-forever"]);
        old_run.run = "crashed-run".into();
        let old = docker.start(&old_run, log.clone()).await?;
        let current_run = request(&project, "svc", 2, &network, &["--sleep-forever"]);
        let current = docker.start(&current_run, log.clone()).await?;
        // Same image, created behind fleet's back: no labels.
        // Named as fleet would name an instance, to check fleet does not take the name.
        let stranger_name = container_name(&project, "stranger", 1);
        let stranger = docker
            .client
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(stranger_name.clone()),
                    platform: String::new(),
                }),
                ContainerCreateBody {
                    image: Some(IMAGE_TAG.into()),
                    cmd: Some(vec!["--sleep-forever".into()]),
                    ..Default::default()
                },
            )
            .await?;
        cleanup.unlabelled.push(stranger.id.clone());

        assert_eq!(docker.sweep(&project, Some("test-run")).await?, 1);
        assert_eq!(exit_within(old.exit).await?, ExitStatus::Signal(9));
        let exists = |id: String| {
            let docker = docker.clone();
            async move {
                docker
                    .client
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await
                    .is_ok()
            }
        };
        assert!(!exists(old.id.clone()).await);
        assert!(exists(current.id.clone()).await);
        assert_eq!(docker.sweep(&project, None).await?, 1);
        assert_eq!(exit_within(current.exit).await?, ExitStatus::Signal(9));
        assert!(!exists(current.id.clone()).await);
        assert!(
            exists(stranger.id.clone()).await,
            "the unlabelled container was touched"
        );
        assert_eq!(docker.sweep(&project, None).await?, 0);

        // A leftover of a crashed run holding the next instance's name is replaced.
        let mut leftover = request(&project, "svc", 5, &network, &["--sleep-forever"]);
        leftover.run = "crashed-run".into();
        let leftover = docker.start(&leftover, log.clone()).await?;
        let replacement = request(&project, "svc", 5, &network, &["--sleep-forever"]);
        let replacement = docker.start(&replacement, log.clone()).await?;
        assert_ne!(leftover.id, replacement.id);
        assert_eq!(exit_within(leftover.exit).await?, ExitStatus::Signal(9));
        docker.remove(&replacement.id).await;
        // The stranger's name is not fleet's to take.
        let clash = request(&project, "stranger", 1, &network, &["--sleep-forever"]);
        match docker.start(&clash, log.clone()).await {
            Err(ContainerError::Api(message)) => {
                assert!(message.contains("is not a leftover"), "{message}")
            }
            other => return Err(format!("took the stranger's name: {other:?}").into()),
        }

        docker.remove(&stranger.id).await;
        assert!(!exists(stranger.id.clone()).await);
        Ok(())
    }

    /// Found by the chaos soak (`scripts/soak`): after a `kill -9` of the supervisor,
    /// the dying run's keeper and the next `fleet up`'s sweep remove the same container
    /// at once. The engine refuses the second removal with 409 while the first is still
    /// under way, and the sweep returned then, so the preflight found the container's
    /// published port still held ("port ... is already in use (owner not visible)")
    /// and the fleet did not come back.
    #[tokio::test]
    async fn a_sweep_racing_a_removal_in_progress_returns_once_the_port_is_free() -> TestResult {
        let Some(docker) =
            docker_or_skip("a_sweep_racing_a_removal_in_progress_returns_once_the_port_is_free")
                .await?
        else {
            return Ok(());
        };
        test_image(&docker).await?;
        let project = unique_project("sweeprace");
        let _cleanup = Cleanup::new(&project);
        let network = docker.ensure_network(&project).await?;
        let dir = tempfile::tempdir()?;
        let log = ServiceLog::open(dir.path(), "svc", 0, 1, LogHub::default())?;
        for round in 1..=3 {
            let host_port = free_port()?;
            let mut crashed = request(&project, "svc", round, &network, &["--sleep-forever"]);
            crashed.run = "crashed-run".into();
            crashed.ports = vec![PortMapping {
                host_ip: "127.0.0.1".into(),
                host: host_port,
                container: PUBLISHED_PORT,
                host_last: None,
            }];
            let crashed = docker.start(&crashed, log.clone()).await?;
            assert!(
                crate::runtime::ports::check_free(host_port).is_err(),
                "the container does not publish port {host_port}"
            );
            // The keeper's removal, already under way when the sweep asks.
            let keeper = {
                let docker = docker.clone();
                let id = crashed.id.clone();
                tokio::spawn(async move { docker.remove(&id).await })
            };
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(docker.sweep(&project, None).await?, 1);
            assert!(
                !container_exists(&docker, &crashed.id).await,
                "round {round}: the sweep returned while the container was still there"
            );
            assert_eq!(
                crate::runtime::ports::check_free(host_port),
                Ok(()),
                "round {round}: port {host_port} is still taken after the sweep"
            );
            keeper.await?;
        }
        Ok(())
    }

    #[test]
    fn keeper_removes_the_containers_of_its_run_without_a_runtime() -> TestResult {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let Some(docker) = runtime.block_on(docker_or_skip(
            "keeper_removes_the_containers_of_its_run_without_a_runtime",
        ))?
        else {
            return Ok(());
        };
        runtime.block_on(test_image(&docker))?;
        let project = unique_project("keeper");
        let _cleanup = Cleanup::new(&project);
        let (mine, other) = runtime.block_on(async {
            let network = docker.ensure_network(&project).await?;
            let dir = tempfile::tempdir()?;
            let log = ServiceLog::open(dir.path(), "svc", 0, 1, LogHub::default())?;
            let mut mine = request(&project, "svc", 1, &network, &["--sleep-forever"]);
            mine.run = "dying-run".into();
            let mine = docker.start(&mine, log.clone()).await?;
            let other = request(&project, "svc", 2, &network, &["--sleep-forever"]);
            let other = docker.start(&other, log).await?;
            Ok::<_, Box<dyn Error>>((mine, other))
        })?;

        assert_eq!(
            remove_run_containers_blocking(&project, "dying-run", false)?,
            1
        );

        runtime.block_on(async {
            assert_eq!(exit_within(mine.exit).await?, ExitStatus::Signal(9));
            let other_alive = docker
                .client
                .inspect_container(&other.id, None::<InspectContainerOptions>)
                .await?;
            assert_eq!(
                other_alive.state.and_then(|state| state.running),
                Some(true)
            );
            docker.remove(&other.id).await;
            Ok::<_, Box<dyn Error>>(())
        })?;
        Ok(())
    }
}
