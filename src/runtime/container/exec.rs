//! A command run inside a running container (`fleet exec` of a container service), as
//! `docker exec` does it through the engine's API: create an exec instance, start it
//! attached (with a TTY when asked), copy the caller's input into it and its output
//! out, and read its exit code once its output ends.

use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{api_error, ContainerError, Docker};

/// How long the engine may take to mark an exec as ended once its output closed.
const EXIT_CODE_DEADLINE: Duration = Duration::from_secs(5);

/// An exec instance, started and attached.
pub struct ExecSession {
    id: String,
    output: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl Docker {
    /// Starts `argv` in `container`, attached to its stdin, stdout and stderr; with
    /// `tty`, on a pseudo-terminal of `size` (columns, rows).
    pub async fn exec_start(
        &self,
        container: &str,
        argv: &[String],
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<ExecSession, ContainerError> {
        let mut config: bollard::models::ExecConfig = CreateExecOptions {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty),
            cmd: Some(argv.to_vec()),
            ..Default::default()
        }
        .into();
        if tty && let Some((columns, rows)) = size {
            config.console_size = Some(vec![usize::from(rows), usize::from(columns)]);
        }
        let created = self
            .client
            .create_exec(container, config)
            .await
            .map_err(|err| api_error("cannot create the exec", &err))?;
        let started = self
            .client
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|err| api_error("cannot start the exec", &err))?;
        match started {
            StartExecResults::Attached { output, input } => Ok(ExecSession {
                id: created.id,
                output,
                input,
            }),
            StartExecResults::Detached => Err(ContainerError::Api(
                "the engine started the exec detached".into(),
            )),
        }
    }

    /// Resizes an exec's pseudo-terminal (the caller's terminal was resized).
    pub async fn exec_resize(&self, session: &str, (columns, rows): (u16, u16)) {
        let options = bollard::query_parameters::ResizeExecOptions {
            h: i32::from(rows),
            w: i32::from(columns),
        };
        // A resize that races the exec's end is of no consequence.
        let _ = self.client.resize_exec(session, options).await;
    }

    /// The exit code of an exec whose output has ended.
    pub async fn exec_exit_code(&self, session: &str) -> Result<i64, ContainerError> {
        let deadline = tokio::time::Instant::now() + EXIT_CODE_DEADLINE;
        loop {
            let inspected = self
                .client
                .inspect_exec(session)
                .await
                .map_err(|err| api_error("cannot inspect the exec", &err))?;
            if inspected.running != Some(true)
                && let Some(code) = inspected.exit_code
            {
                return Ok(code);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ContainerError::Api(
                    "the exec's output ended but the engine reports no exit code".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl ExecSession {
    /// The exec instance's id (for [`Docker::exec_resize`] and
    /// [`Docker::exec_exit_code`]).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Copies `stdin` into the exec (closing its input at `stdin`'s end) and its output
    /// to `stdout` and `stderr` (a TTY's to `stdout`), until its output ends.
    pub async fn pump(
        self,
        mut stdin: impl AsyncRead + Unpin + Send + 'static,
        mut stdout: impl AsyncWrite + Unpin,
        mut stderr: impl AsyncWrite + Unpin,
    ) {
        let ExecSession {
            mut output,
            mut input,
            ..
        } = self;
        let feed = tokio::spawn(async move {
            let mut buffer = vec![0u8; 8192];
            loop {
                match stdin.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => {
                        if input.write_all(&buffer[..read]).await.is_err()
                            || input.flush().await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
            // The end of our input is the end of the command's: it sees EOF.
            let _ = input.shutdown().await;
        });
        while let Some(Ok(chunk)) = output.next().await {
            let (target, bytes): (&mut (dyn AsyncWrite + Unpin), _) = match chunk {
                LogOutput::StdErr { message } => (&mut stderr, message),
                LogOutput::StdOut { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message } => (&mut stdout, message),
            };
            if target.write_all(&bytes).await.is_err() || target.flush().await.is_err() {
                break;
            }
        }
        feed.abort();
    }
}
