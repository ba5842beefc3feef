//! Docker containers through the engine's API (bollard): build images, create, start,
//! stop, signal, kill and remove containers, follow their output, see them exit, and
//! sweep what a crashed run left behind.
//!
//! Owns: every call fleet makes to the Docker engine. It never runs the `docker` CLI,
//! never pulls from a registry (a missing image is [`ContainerError::ImageMissing`]),
//! and never touches a Docker object that does not carry fleet's labels: everything it
//! creates is labelled `fleet.project` (containers also `fleet.service`,
//! `fleet.generation`, `fleet.run`), and every listing it removes from is filtered by
//! those labels. It makes no policy decisions: when to stop, kill, restart or sweep is
//! the service runner's and the supervisor's call.
//!
//! This file holds the [`Docker`] handle, the connection to the engine (socket, API
//! version) and the error vocabulary; the rest is split by what it drives:
//! - `instance`: one container's life (create, start, stop, signal, remove, health)
//!   and its output;
//! - `events`: the exit dispatcher, one event stream serving every waiting instance;
//! - `build`: images (presence, builds) and the build context (tar, `.dockerignore`);
//! - `objects`: networks, named volumes, and sweeping containers by label;
//! - `exec`: a command run inside a running container (`fleet exec`).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bollard::errors::Error as BollardError;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::event::ExitStatus;
use crate::manifest::{EngineHealthCheck, PortMapping};

use events::{follow_exits, ExitDispatcher, Waiters};

mod build;
mod events;
mod exec;
mod instance;
mod objects;
#[cfg(test)]
pub(crate) mod test_support;

pub use events::exit_status;
pub use exec::ExecSession;
pub use objects::{remove_run_containers_blocking, ProjectObjects};

/// Label on everything fleet creates: the project it belongs to.
pub const LABEL_PROJECT: &str = "fleet.project";

/// Label on containers: the service an instance runs.
pub const LABEL_SERVICE: &str = "fleet.service";

/// Label on containers: the instance's generation.
pub const LABEL_GENERATION: &str = "fleet.generation";

/// Label on containers: the supervisor run that created it (what the keeper removes).
pub const LABEL_RUN: &str = "fleet.run";

/// The socket used when `DOCKER_HOST` is not set.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Docker API 1.41 is Docker 20.10 (2020): the oldest engine fleet is tested against.
const MIN_API_VERSION: (u32, u32) = (1, 41);
/// How long `connect` waits for the engine to answer: a local engine answers in
/// milliseconds, and `fleet up` should not hang for bollard's default two minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Request timeout for streams (events, logs, builds). bollard's timeout covers the
/// wait for the response headers, and the engine sends the headers of an event stream
/// only with its first event, so a quiet hour must not count as a timeout.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug)]
pub enum ContainerError {
    /// The engine cannot be reached, or is too old.
    Unreachable { socket: String, reason: String },
    /// The image is not present locally and there is no build to make it.
    ImageMissing { image: String },
    /// An image build failed; `reason` is the engine's message.
    Build { reason: String },
    /// Any other engine error, with what fleet was doing.
    Api(String),
}

impl std::fmt::Display for ContainerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContainerError::Unreachable { socket, reason } => {
                write!(f, "cannot reach the Docker engine at {socket}: {reason}")
            }
            ContainerError::ImageMissing { image } => write!(
                f,
                "image `{image}` is not present locally and the service has no `build`; \
                 fleet does not pull from registries (pull or build it yourself first)"
            ),
            ContainerError::Build { reason } => write!(f, "image build failed: {reason}"),
            ContainerError::Api(message) => write!(f, "Docker: {message}"),
        }
    }
}

impl std::error::Error for ContainerError {}

/// One container instance to create and start.
#[derive(Debug, Clone)]
pub struct ContainerRequest {
    pub project: String,
    /// The service: its alias on the network, which every replica shares.
    pub service: String,
    /// The replica's own name (`web`, `web.2`): the container's name and label.
    pub instance: String,
    pub generation: u64,
    /// The supervisor run id; the keeper removes the containers of its run.
    pub run: String,
    pub image: String,
    /// Overrides the image's command (`CMD`); the entrypoint stays.
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub ports: Vec<PortMapping>,
    /// `/abs/host:container[:ro]` binds or `name:container[:ro]` named volumes. Named
    /// volumes are used by the name given; fleet creates (and labels) the missing ones.
    pub volumes: Vec<String>,
    /// The network to join (from [`Docker::ensure_network`]); the service name is the
    /// instance's alias on it.
    pub network: String,
    /// A signal name (`SIGTERM`) the engine sends on stop.
    pub stop_signal: String,
    /// The container's default grace period (used by the engine's own shutdown too).
    pub stop_timeout: Duration,
    /// A health check for the engine to run inside the container instead of the
    /// image's `HEALTHCHECK`.
    pub healthcheck: Option<EngineHealthCheck>,
    /// Run the engine's init (`docker run --init`) as PID 1.
    pub init: bool,
}

/// A started container: its id, its exit, and the task copying its output.
#[derive(Debug)]
pub struct StartedContainer {
    pub id: String,
    /// Resolves with the container's exit; an error means the Docker handle was dropped.
    pub exit: oneshot::Receiver<ExitStatus>,
    /// Ends when the container stops and its last output is written.
    pub logs: JoinHandle<()>,
}

/// Whether the engine answers, as the exit dispatcher last found (see `events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineLink {
    Reachable,
    /// The event stream broke and the engine does not answer a ping.
    Unreachable {
        reason: String,
    },
}

/// Handle to the Docker engine: cheap to clone, shared by every container runner.
#[derive(Clone)]
pub struct Docker {
    client: bollard::Docker,
    /// Where the engine was reached, for error messages.
    socket: Arc<str>,
    exits: Arc<ExitDispatcher>,
    /// Published by the exit dispatcher when the engine goes away and comes back.
    link: watch::Receiver<EngineLink>,
    /// How many removals [`Docker::remove_in_background`] has under way.
    removals: Arc<watch::Sender<usize>>,
}

impl Docker {
    /// Connects to the engine (`DOCKER_HOST`, else `/var/run/docker.sock`), checks that
    /// it answers and is new enough, and starts following container exits. Must be
    /// called inside the tokio runtime.
    pub async fn connect() -> Result<Docker, ContainerError> {
        let connected_at = SystemTime::now();
        let (client, socket) = connect_client(docker_host_from_env()).await?;
        let waiters: Waiters = Arc::new(Mutex::new(HashMap::new()));
        let (link_sender, link) = watch::channel(EngineLink::Reachable);
        let task = tokio::spawn(follow_exits(
            client.clone().with_timeout(STREAM_TIMEOUT),
            waiters.clone(),
            connected_at,
            link_sender,
        ));
        Ok(Docker {
            client,
            socket: Arc::from(socket),
            exits: Arc::new(ExitDispatcher {
                waiters,
                task: task.abort_handle(),
            }),
            link,
            removals: Arc::new(watch::channel(0).0),
        })
    }

    /// Where the engine was reached (`/var/run/docker.sock` or `DOCKER_HOST`).
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Whether the engine answers, now and as it changes. The exit dispatcher
    /// publishes `Unreachable` when its event stream breaks and the engine does not
    /// answer, and `Reachable` once it answers again and the exits it missed have
    /// been delivered.
    pub fn link(&self) -> watch::Receiver<EngineLink> {
        self.link.clone()
    }
}

/// `DOCKER_HOST`, unless unset or empty.
fn docker_host_from_env() -> Option<String> {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty())
}

/// Opens the client for `docker_host` (a `DOCKER_HOST` value, else the default socket)
/// and checks the engine: it answers, and speaks a new enough API. Returns the client
/// and the description of where it connected, for error messages.
async fn connect_client(
    docker_host: Option<String>,
) -> Result<(bollard::Docker, String), ContainerError> {
    let socket = match &docker_host {
        Some(host) => format!("{host} (from DOCKER_HOST)"),
        None => DEFAULT_SOCKET.to_string(),
    };
    let unreachable = |reason: String| ContainerError::Unreachable {
        socket: socket.clone(),
        reason,
    };
    let client = match &docker_host {
        None => bollard::Docker::connect_with_unix(
            DEFAULT_SOCKET,
            CONNECT_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        ),
        Some(host) if host.starts_with("unix://") => bollard::Docker::connect_with_unix(
            host,
            CONNECT_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        ),
        // tcp:// and http://, read from DOCKER_HOST by bollard itself.
        Some(_) => bollard::Docker::connect_with_defaults(),
    }
    .map_err(|err| unreachable(unreachable_reason(&err)))?;
    // Negotiation is the only request (`/version`): it lowers bollard's client API
    // version to the engine's, so an older engine accepts every later request, and the
    // version it settled on says whether the engine is new enough (it is the engine's
    // own unless the engine is newer than bollard). An answer proves the engine is
    // there, so no ping and no second `/version`: each is a round trip `fleet up`
    // waits for before its first container.
    let client = client
        .with_timeout(CONNECT_TIMEOUT)
        .negotiate_version()
        .await
        .map_err(|err| unreachable(unreachable_reason(&err)))?;
    let settled = client.client_version();
    let found = (
        u32::try_from(settled.major_version).unwrap_or(u32::MAX),
        u32::try_from(settled.minor_version).unwrap_or(u32::MAX),
    );
    if found < MIN_API_VERSION {
        return Err(unreachable(format!(
            "the engine speaks Docker API {}.{}, fleet needs {}.{} or newer (Docker 20.10 \
             or later); upgrade the engine",
            found.0, found.1, MIN_API_VERSION.0, MIN_API_VERSION.1
        )));
    }
    // Ordinary requests (create, inspect, remove) get bollard's default two minutes;
    // streams get their own longer timeout where they are opened.
    let client = client.with_timeout(Duration::from_secs(120));
    Ok((client, socket))
}

/// Says why the engine could not be reached, in terms a user can act on.
fn unreachable_reason(err: &BollardError) -> String {
    if let BollardError::SocketNotFoundError(path) = err {
        return format!(
            "there is no socket at {path}: the Docker engine is not running (or not installed)"
        );
    }
    if let BollardError::RequestTimeoutError = err {
        return format!(
            "the engine did not answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        );
    }
    if let BollardError::UnsupportedURISchemeError { uri } = err {
        return format!("DOCKER_HOST={uri} is not supported; use unix:// or tcp://");
    }
    match io_error_kind(err) {
        Some(io::ErrorKind::PermissionDenied) => "permission denied: your user may not use the \
            Docker socket; add it to the `docker` group (then log in again) or point DOCKER_HOST \
            at a socket you may use"
            .to_string(),
        Some(io::ErrorKind::ConnectionRefused) | Some(io::ErrorKind::NotFound) => {
            "connection refused: the Docker engine is not running".to_string()
        }
        _ => engine_message(err),
    }
}

/// The kind of the OS error somewhere in `err`'s chain, if any.
fn io_error_kind(err: &BollardError) -> Option<io::ErrorKind> {
    if let BollardError::IOError { err } = err {
        return Some(err.kind());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(io_error) = current.downcast_ref::<io::Error>() {
            return Some(io_error.kind());
        }
        source = current.source();
    }
    None
}

fn status_code(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own message where there is one, else bollard's description.
fn engine_message(err: &BollardError) -> String {
    match err {
        BollardError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        BollardError::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

fn api_error(doing: &str, err: &BollardError) -> ContainerError {
    ContainerError::Api(format!("{doing}: {}", engine_message(err)))
}

/// For the fire-and-forget calls (stop, kill, remove): "already stopped" (304), "no
/// such object" (404) and "not running / removal in progress" (409) are what the
/// caller wanted anyway; anything else is told, since the caller has no error path.
fn report_unless_gone(doing: &str, what: &str, err: &BollardError) {
    if !matches!(status_code(err), Some(304 | 404 | 409)) {
        report(doing, what, err);
    }
}

fn report(doing: &str, what: &str, err: &BollardError) {
    crate::note!(
        "fleet: Docker: cannot {doing} {what}: {}",
        engine_message(err)
    );
}

/// Docker names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; anything else becomes `-`.
fn sanitise_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert_str(0, "fleet");
    }
    name
}

/// Whether a missing engine must fail the container tests instead of skipping them:
/// `FLEET_REQUIRE_DOCKER` set to anything but empty or `0` (CI sets it). The one place
/// that reads it, for the unit and the integration tests alike.
pub fn docker_required() -> bool {
    std::env::var("FLEET_REQUIRE_DOCKER").is_ok_and(|value| !value.is_empty() && value != "0")
}

pub fn container_name(project: &str, service: &str, generation: u64) -> String {
    sanitise_name(&format!("{project}-{service}-{generation}"))
}

pub fn network_name(project: &str) -> String {
    sanitise_name(&format!("fleet-{project}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::test_support::TestResult;

    #[test]
    fn names_are_sanitised_for_docker() {
        assert_eq!(container_name("shop", "web", 7), "shop-web-7");
        assert_eq!(container_name("my shop", "api/v2", 1), "my-shop-api-v2-1");
        assert_eq!(container_name("_x", "y", 1), "fleet_x-y-1");
        assert_eq!(network_name("my shop"), "fleet-my-shop");
    }

    #[test]
    fn errors_say_what_to_do() {
        let missing = ContainerError::ImageMissing {
            image: "postgres:16".into(),
        };
        assert_eq!(
            missing.to_string(),
            "image `postgres:16` is not present locally and the service has no `build`; \
             fleet does not pull from registries (pull or build it yourself first)"
        );
        let permission = unreachable_reason(&BollardError::IOError {
            err: io::Error::from(io::ErrorKind::PermissionDenied),
        });
        assert!(permission.starts_with("permission denied"), "{permission}");
        let not_running = unreachable_reason(&BollardError::SocketNotFoundError("/x.sock".into()));
        assert!(not_running.contains("not running"), "{not_running}");
    }

    #[tokio::test]
    async fn unreachable_engine_names_the_socket_and_says_why() -> TestResult {
        let missing = "unix:///nonexistent/fleet-test/docker.sock";
        match connect_client(Some(missing.to_string())).await {
            Err(err @ ContainerError::Unreachable { .. }) => {
                let text = err.to_string();
                crate::note!("message: {text}");
                assert!(
                    text.starts_with(&format!(
                        "cannot reach the Docker engine at {missing} (from DOCKER_HOST): "
                    )),
                    "{text}"
                );
                assert!(text.contains("not running"), "{text}");
            }
            other => return Err(format!("expected Unreachable, got {other:?}").into()),
        }

        // A socket file nobody listens on: what a stopped engine leaves behind.
        let dir = tempfile::tempdir()?;
        let stale = dir.path().join("docker.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale)?);
        match connect_client(Some(format!("unix://{}", stale.display()))).await {
            Err(ContainerError::Unreachable { reason, .. }) => {
                crate::note!("message: {reason}");
                assert!(reason.contains("not running"), "{reason}")
            }
            other => return Err(format!("expected Unreachable, got {other:?}").into()),
        }
        Ok(())
    }

    /// An engine that speaks API 1.40 (Docker 19.03), served by a fake on a socket.
    #[tokio::test]
    async fn an_engine_older_than_api_1_41_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("old-docker.sock");
        let listener = tokio::net::UnixListener::bind(&path)?;
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let body = if head.contains("/_ping") {
                    "OK"
                } else {
                    r#"{"ApiVersion":"1.40","MinAPIVersion":"1.12","Version":"19.03.15"}"#
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        let result = connect_client(Some(format!("unix://{}", path.display()))).await;
        server.abort();
        match result {
            Err(ContainerError::Unreachable { reason, .. }) => {
                assert!(
                    reason.starts_with("the engine speaks Docker API 1.40, fleet needs 1.41"),
                    "{reason}"
                )
            }
            other => return Err(format!("expected Unreachable, got {other:?}").into()),
        }
        Ok(())
    }
}
