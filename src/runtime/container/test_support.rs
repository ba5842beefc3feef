//! Support for the container tests: the engine tests skip with a note when Docker is
//! unreachable, and fail instead when `FLEET_REQUIRE_DOCKER=1`. They build one image
//! from scratch holding a static build of `examples/helper.rs` (nothing is pulled),
//! give every test its own project name, and remove what they create even when they
//! fail. Test-only; shared by the tests of every file in `container/` and by
//! `runtime::instance`.

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, StartContainerOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{ContainerError, ContainerRequest, Docker, LABEL_PROJECT, LABEL_RUN};
use crate::event::ExitStatus;
use crate::logs::{read_from, LogLine, ServiceLog};
use crate::manifest::ImageBuild;

pub(crate) type TestResult = Result<(), Box<dyn Error>>;

/// The one image every engine test runs; rebuilt from the builder cache each run.
pub(crate) const IMAGE_TAG: &str = "fleet-test/helper:container-rs";

/// The same with a `HEALTHCHECK`, for `health_status`.
pub(crate) const HEALTH_IMAGE_TAG: &str = "fleet-test/helper-health:container-rs";

/// Every wait on the engine ends by then; a loaded 2-core CI box starts a container
/// in well under a second, so this only catches hangs.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// The port the helper listens on inside its container (on its loopback).
const HELPER_PORT: u16 = 9000;

/// The container port published to the host, served by the test's forwarder.
pub(crate) const PUBLISHED_PORT: u16 = 8080;

/// The engine, or `None` (with a note) when it is unreachable and not required.
pub(crate) async fn docker_or_skip(test: &str) -> Result<Option<Docker>, ContainerError> {
    match Docker::connect().await {
        Ok(docker) => Ok(Some(docker)),
        Err(err) if super::docker_required() => Err(err),
        Err(err) => {
            crate::note!("skipping {test}: {err} (FLEET_REQUIRE_DOCKER=1 makes this a failure)");
            Ok(None)
        }
    }
}

pub(crate) fn unique_project(purpose: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("ct-{purpose}-{:x}{:x}", std::process::id(), nanos)
}

pub(crate) fn test_labels() -> HashMap<String, String> {
    HashMap::from([("fleet.test".to_string(), "container-rs".to_string())])
}

/// Removes the project's containers, network and volumes, and the given unlabelled
/// containers, when the test ends, however it ends. Runs on its own thread and
/// runtime, since `Drop` cannot await.
pub(crate) struct Cleanup {
    project: String,
    pub(crate) unlabelled: Vec<String>,
}

impl Cleanup {
    pub(crate) fn new(project: &str) -> Cleanup {
        Cleanup {
            project: project.to_string(),
            unlabelled: Vec::new(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let project = self.project.clone();
        let unlabelled = std::mem::take(&mut self.unlabelled);
        let cleaner = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let Ok(docker) = Docker::connect().await else {
                    return;
                };
                for id in &unlabelled {
                    docker.remove(id).await;
                }
                let _ = docker.sweep(&project, None).await;
                docker.remove_network(&project).await;
                docker.remove_volumes(&project).await;
            });
        });
        let _ = cleaner.join();
    }
}

pub(crate) struct TestImage {
    pub(crate) build_time: Duration,
    pub(crate) progress: Vec<String>,
    /// The build context (helper, forwarder, Dockerfile), kept for other builds.
    pub(crate) context: PathBuf,
}

static TEST_IMAGE: tokio::sync::OnceCell<Result<TestImage, String>> =
    tokio::sync::OnceCell::const_new();

/// Builds [`IMAGE_TAG`] once per test binary; every engine test awaits it.
pub(crate) async fn test_image(docker: &Docker) -> Result<&'static TestImage, Box<dyn Error>> {
    let image = TEST_IMAGE
        .get_or_init(|| async {
            build_test_image(docker)
                .await
                .map_err(|err| format!("cannot build the test image: {err}"))
        })
        .await;
    image.as_ref().map_err(|err| err.clone().into())
}

async fn build_test_image(docker: &Docker) -> Result<TestImage, Box<dyn Error>> {
    let context = tokio::task::spawn_blocking(prepare_context)
        .await?
        .map_err(|err| err.to_string())?;
    let build = ImageBuild {
        context: context.clone(),
        dockerfile: "Dockerfile".into(),
        args: BTreeMap::new(),
    };
    let mut progress = Vec::new();
    let started = Instant::now();
    docker
        .build_image(&build, IMAGE_TAG, test_labels(), |line| {
            progress.push(line.to_string())
        })
        .await?;
    Ok(TestImage {
        build_time: started.elapsed(),
        progress,
        context,
    })
}

/// Builds the static helper and the forwarder, and writes the context folder.
fn prepare_context() -> Result<PathBuf, Box<dyn Error + Send + Sync>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let static_dir = root.join("target/static");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--quiet", "--example", "helper"])
        .args(["--target", "x86_64-unknown-linux-gnu", "--target-dir"])
        .arg(&static_dir)
        .status()?;
    if !status.success() {
        return Err(format!("static build of examples/helper.rs failed: {status}").into());
    }
    let helper = static_dir.join("x86_64-unknown-linux-gnu/debug/examples/helper");

    let forwarder_source = static_dir.join("portfwd.rs");
    let forwarder = static_dir.join("portfwd");
    if fs::read_to_string(&forwarder_source).ok().as_deref() != Some(FORWARDER_SOURCE)
        || !forwarder.exists()
    {
        fs::write(&forwarder_source, FORWARDER_SOURCE)?;
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let status = std::process::Command::new(rustc)
            .args([
                "--edition",
                "2021",
                "-O",
                "-C",
                "target-feature=+crt-static",
            ])
            .args(["--target", "x86_64-unknown-linux-gnu", "-o"])
            .arg(&forwarder)
            .arg(&forwarder_source)
            .status()?;
        if !status.success() {
            return Err(format!("building the test forwarder failed: {status}").into());
        }
    }
    for binary in [&helper, &forwarder] {
        if has_interpreter(binary)? {
            return Err(format!(
                "{} is dynamically linked; a `FROM scratch` image cannot run it",
                binary.display()
            )
            .into());
        }
    }

    let context = static_dir.join("container-test-context");
    fs::create_dir_all(&context)?;
    fs::copy(&helper, context.join("helper"))?;
    fs::copy(&forwarder, context.join("portfwd"))?;
    fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY helper /helper\nCOPY portfwd /portfwd\nENTRYPOINT [\"/helper\"]\n",
    )?;
    Ok(context)
}

/// Whether an ELF file asks for a dynamic loader (has a `PT_INTERP` segment).
fn has_interpreter(path: &Path) -> io::Result<bool> {
    let bytes = fs::read(path)?;
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "not a 64-bit ELF file");
    let field = |offset: usize, len: usize| -> io::Result<u64> {
        let raw = bytes.get(offset..offset + len).ok_or_else(malformed)?;
        Ok(raw
            .iter()
            .rev()
            .fold(0u64, |acc, byte| acc << 8 | u64::from(*byte)))
    };
    if bytes.get(..5) != Some(b"\x7fELF\x02") {
        return Err(malformed());
    }
    let table = field(0x20, 8)? as usize;
    let entry_size = field(0x36, 2)? as usize;
    let count = field(0x38, 2)? as usize;
    const PT_INTERP: u64 = 3;
    for index in 0..count {
        if field(table + index * entry_size, 4)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A test-only TCP forwarder, run beside the helper in its network namespace: the
/// helper listens on the container's loopback only (`127.0.0.1`), which a
/// published port cannot reach, so the forwarder listens on all addresses of the
/// container and relays to it.
const FORWARDER_SOURCE: &str = r#"
use std::io::copy;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

fn relay(mut from: TcpStream, mut to: TcpStream) {
    let _ = copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: portfwd LISTEN_PORT TARGET_PORT");
        std::process::exit(2);
    }
    let listener = match TcpListener::bind(("0.0.0.0", args[1].parse::<u16>().unwrap_or(0))) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("portfwd: {error}");
            std::process::exit(1);
        }
    };
    let target = format!("127.0.0.1:{}", args[2]);
    for client in listener.incoming().flatten() {
        let target = target.clone();
        thread::spawn(move || {
            let Ok(server) = TcpStream::connect(&target) else { return };
            let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            let upstream = thread::spawn(move || relay(client_reader, server));
            relay(server_reader, client);
            let _ = upstream.join();
        });
    }
}
"#;

/// Starts the forwarder in `target`'s network namespace, labelled with the project
/// so the test's cleanup removes it.
pub(crate) async fn start_forwarder(
    docker: &Docker,
    project: &str,
    target: &str,
) -> Result<String, Box<dyn Error>> {
    let body = ContainerCreateBody {
        image: Some(IMAGE_TAG.into()),
        entrypoint: Some(vec!["/portfwd".into()]),
        cmd: Some(vec![PUBLISHED_PORT.to_string(), HELPER_PORT.to_string()]),
        labels: Some(HashMap::from([
            (LABEL_PROJECT.to_string(), project.to_string()),
            (LABEL_RUN.to_string(), "test-forwarder".to_string()),
        ])),
        host_config: Some(HostConfig {
            network_mode: Some(format!("container:{target}")),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .client
        .create_container(None::<CreateContainerOptions>, body)
        .await?;
    docker
        .client
        .start_container(&created.id, None::<StartContainerOptions>)
        .await?;
    Ok(created.id)
}

pub(crate) fn request(
    project: &str,
    service: &str,
    generation: u64,
    network: &str,
    command: &[&str],
) -> ContainerRequest {
    ContainerRequest {
        project: project.to_string(),
        service: service.to_string(),
        instance: service.to_string(),
        generation,
        run: "test-run".to_string(),
        image: IMAGE_TAG.to_string(),
        command: Some(command.iter().map(|arg| arg.to_string()).collect()),
        env: vec![("FLEET_TEST".to_string(), "1".to_string())],
        ports: Vec::new(),
        volumes: Vec::new(),
        network: network.to_string(),
        stop_signal: "SIGTERM".to_string(),
        stop_timeout: Duration::from_secs(1),
        healthcheck: None,
        init: false,
    }
}

/// Whether the engine still knows container `id`, running or not.
pub(crate) async fn container_exists(docker: &Docker, id: &str) -> bool {
    docker
        .client
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .is_ok()
}

pub(crate) fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One HTTP/1.0 GET; `None` for anything short of a whole response.
pub(crate) async fn http_get(port: u16, path: &str) -> Option<String> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        Some(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

pub(crate) fn log_lines(log: &ServiceLog) -> io::Result<Vec<LogLine>> {
    Ok(read_from(log.path(), 0)?.0)
}

pub(crate) async fn exit_within(
    exit: oneshot::Receiver<ExitStatus>,
) -> Result<ExitStatus, Box<dyn Error>> {
    Ok(tokio::time::timeout(DEADLINE, exit).await??)
}

pub(crate) fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
