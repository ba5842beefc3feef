//! The control socket's server side. It holds no state: it answers from the
//! supervisor's snapshot and forwards commands to the supervisor's queue.
//!
//! Every connection is its own task, so a slow, silent or disconnected client costs
//! nothing to the others or to the supervisor. A malformed, oversized or unknown
//! request gets an error reply and the connection keeps serving.

use std::io;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;

use super::{codes, ErrorBody, Hello, Reply, Request, RequestLine, MAX_REQUEST, PROTOCOL_VERSION};
use crate::supervisor::SupervisorHandle;

/// Binds the project's socket (replacing a stale one; the caller holds the lock) with
/// mode 0600.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: UnixListener, handle: SupervisorHandle, hello: Hello) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        let hello = hello.clone();
        tokio::spawn(async move {
            // A client that goes away mid-reply is not an error worth reporting.
            let _ = connection(stream, handle, hello).await;
        });
    }
}

fn error(code: &str, message: impl Into<String>) -> Reply {
    Reply::Error(ErrorBody {
        code: code.to_string(),
        message: message.into(),
    })
}

async fn send(stream: &mut UnixStream, reply: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await
}

async fn connection(
    mut stream: UnixStream,
    handle: SupervisorHandle,
    hello: Hello,
) -> io::Result<()> {
    let own_uid = nix::unistd::geteuid().as_raw();
    let peer_uid = stream.peer_cred().map(|cred| cred.uid()).ok();
    if peer_uid != Some(own_uid) {
        let who = peer_uid
            .map(|uid| format!("uid {uid}"))
            .unwrap_or_else(|| "an unknown user".into());
        let message = format!("{who} may not control a fleet run by uid {own_uid}");
        return send(&mut stream, &error(codes::PERMISSION_DENIED, message)).await;
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut discarding = false;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        // Serve every complete line already buffered.
        while let Some(newline) = memchr::memchr(b'\n', &pending) {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            if discarding {
                // The tail of an oversized request, already answered.
                discarding = false;
                continue;
            }
            let line = &line[..line.len() - 1];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            handle_line(&mut stream, line, &handle, &hello).await?;
        }
        if pending.len() > MAX_REQUEST {
            if !discarding {
                let message = format!("a request may be at most {MAX_REQUEST} bytes");
                send(&mut stream, &error(codes::REQUEST_TOO_LARGE, message)).await?;
            }
            discarding = true;
            pending.clear();
        }
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&buffer[..read]);
    }
}

async fn handle_line(
    stream: &mut UnixStream,
    line: &[u8],
    handle: &SupervisorHandle,
    hello: &Hello,
) -> io::Result<()> {
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(err) => {
            return send(
                stream,
                &error(codes::BAD_REQUEST, format!("not a JSON object: {err}")),
            )
            .await
        }
    };
    if !value.is_object() {
        let message = "a request is a JSON object like {\"version\":1,\"op\":\"ps\"}";
        return send(stream, &error(codes::BAD_REQUEST, message)).await;
    }
    let version = value.get("version").and_then(|v| v.as_u64());
    if version != Some(u64::from(PROTOCOL_VERSION)) {
        let message = format!(
            "this supervisor speaks protocol version {PROTOCOL_VERSION}; the request has {}",
            version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none".into())
        );
        return send(stream, &error(codes::UNSUPPORTED_VERSION, message)).await;
    }
    let request = match serde_json::from_value::<RequestLine>(value.clone()) {
        Ok(line) => line.request,
        Err(err) => {
            let known = ["hello", "ps", "subscribe", "command"];
            let op = value.get("op").and_then(|op| op.as_str());
            return match op {
                Some(op) if !known.contains(&op) => {
                    send(
                        stream,
                        &error(codes::UNKNOWN_REQUEST, format!("unknown request `{op}`")),
                    )
                    .await
                }
                _ => {
                    send(
                        stream,
                        &error(codes::BAD_REQUEST, format!("malformed request: {err}")),
                    )
                    .await
                }
            };
        }
    };
    match request {
        Request::Hello => {
            send(
                stream,
                &Reply::Ok(serde_json::to_value(hello).map_err(io::Error::other)?),
            )
            .await
        }
        Request::Ps => {
            let snapshot = handle.snapshot.borrow().clone();
            send(
                stream,
                &Reply::Ok(serde_json::to_value(&*snapshot).map_err(io::Error::other)?),
            )
            .await
        }
        Request::Command { command } => {
            let reply = match handle.send(command).await {
                Ok(message) => Reply::Ok(serde_json::Value::String(message)),
                Err(err) => error(err.code, err.message),
            };
            send(stream, &reply).await
        }
        Request::Subscribe => subscribe(stream, handle).await,
    }
}

/// Streams the snapshot on every change and every event, until the client leaves or
/// the supervisor ends.
async fn subscribe(stream: &mut UnixStream, handle: &SupervisorHandle) -> io::Result<()> {
    let mut snapshots = handle.snapshot.clone();
    let mut events = handle.events.subscribe();
    let (mut reader, mut writer) = stream.split();
    let mut send_snapshot = true;
    let mut probe = [0u8; 1];
    loop {
        if send_snapshot {
            let snapshot = snapshots.borrow_and_update().clone();
            let value = serde_json::json!({ "snapshot": &*snapshot });
            let mut line = serde_json::to_vec(&Reply::Stream(value)).map_err(io::Error::other)?;
            line.push(b'\n');
            writer.write_all(&line).await?;
            send_snapshot = false;
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    let mut line = serde_json::to_vec(&Reply::Ok(serde_json::Value::String("supervisor ended".into()))).map_err(io::Error::other)?;
                    line.push(b'\n');
                    return writer.write_all(&line).await;
                }
                send_snapshot = true;
            }
            event = events.recv() => match event {
                Ok(event) => {
                    let value = serde_json::json!({ "event": event });
                    let mut line = serde_json::to_vec(&Reply::Stream(value)).map_err(io::Error::other)?;
                    line.push(b'\n');
                    writer.write_all(&line).await?;
                }
                // A lagging subscriber resyncs from the snapshot.
                Err(broadcast::error::RecvError::Lagged(_)) => send_snapshot = true,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            read = reader.read(&mut probe) => {
                // The client closed (or wrote something we don't expect mid-stream).
                if matches!(read, Ok(0) | Err(_)) {
                    return Ok(());
                }
            }
        }
    }
}
