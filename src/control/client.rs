//! The control socket's client side, used by every CLI command but `up` and `check`,
//! and by the TUI.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::{Endpoint, SupervisorLock};
use crate::protocol::{encode_line, ErrorBody, Reply, Request, RequestLine, PROTOCOL_VERSION};

#[derive(Debug)]
pub enum ClientError {
    /// No supervisor runs for this manifest.
    NotRunning {
        project: PathBuf,
    },
    /// The supervisor answered with an error.
    Remote(ErrorBody),
    Io(std::io::Error),
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotRunning { project } => {
                write!(f, "no fleet is running for {}", project.display())
            }
            ClientError::Remote(body) => write!(f, "{} ({})", body.message, body.code),
            ClientError::Io(err) => write!(f, "control socket: {err}"),
            ClientError::Protocol(message) => write!(f, "control socket: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(err: std::io::Error) -> Self {
        ClientError::Io(err)
    }
}

pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    /// Connects to the supervisor of the project whose manifest is `manifest`.
    pub async fn connect(manifest: &Path) -> Result<Client, ClientError> {
        let endpoint = Endpoint::for_manifest(manifest)?;
        let project = manifest.parent().unwrap_or(manifest).to_path_buf();
        // A lock we can take means nobody is serving the socket, whatever is on disk.
        if SupervisorLock::try_acquire(&endpoint.lock)?.is_some() {
            return Err(ClientError::NotRunning { project });
        }
        let stream = match UnixStream::connect(&endpoint.socket).await {
            Ok(stream) => stream,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ClientError::NotRunning { project });
            }
            Err(err) => return Err(err.into()),
        };
        let (reader, writer) = stream.into_split();
        Ok(Client {
            reader: BufReader::new(reader),
            writer,
        })
    }

    async fn write(&mut self, request: Request) -> Result<(), ClientError> {
        let line = RequestLine {
            version: PROTOCOL_VERSION,
            request,
        };
        let bytes = encode_line(&line).map_err(|err| ClientError::Protocol(err.to_string()))?;
        self.writer.write_all(&bytes).await?;
        Ok(())
    }

    /// Reads one reply line.
    pub async fn next_reply(&mut self) -> Result<Reply, ClientError> {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).await?;
        if read == 0 {
            return Err(ClientError::Protocol(
                "the supervisor closed the connection".into(),
            ));
        }
        serde_json::from_str(&line)
            .map_err(|err| ClientError::Protocol(format!("bad reply: {err}")))
    }

    /// Sends a request and returns its final reply, skipping stream lines.
    pub async fn call(&mut self, request: Request) -> Result<serde_json::Value, ClientError> {
        self.write(request).await?;
        loop {
            match self.next_reply().await? {
                Reply::Ok(value) => return Ok(value),
                Reply::Error(body) => return Err(ClientError::Remote(body)),
                Reply::Stream(_) => continue,
            }
        }
    }

    /// Starts a streaming request; read its lines with [`Client::next_reply`].
    pub async fn start_stream(&mut self, request: Request) -> Result<(), ClientError> {
        self.write(request).await
    }
}
