//! The control socket's server side (the protocol is [`crate::protocol`]). It holds no
//! state: it answers from the supervisor's snapshot and forwards commands to the
//! supervisor's queue. It lives beside the supervisor because it serves a
//! [`SupervisorHandle`]; clients need only `control` and `protocol`.
//!
//! Every connection is its own task, so a slow, silent or disconnected client costs
//! nothing to the others or to the supervisor. A malformed, oversized or unknown
//! request gets an error reply and the connection keeps serving.

use std::io;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;

use super::SupervisorHandle;
use crate::protocol::{
    encode_line, parse_request, ErrorCode, Frame, Hello, Reply, Request, RequestFramer, MAX_REQUEST,
};

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

async fn send(stream: &mut UnixStream, reply: &Reply) -> io::Result<()> {
    let line = encode_line(reply).map_err(io::Error::other)?;
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
        return send(
            &mut stream,
            &Reply::error(ErrorCode::PermissionDenied, message),
        )
        .await;
    }
    let mut framer = RequestFramer::new(MAX_REQUEST);
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        for frame in framer.push(&buffer[..read]) {
            match frame {
                Frame::Line(line) => handle_line(&mut stream, &line, &handle, &hello).await?,
                Frame::TooLarge => {
                    let message = format!("a request may be at most {MAX_REQUEST} bytes");
                    let reply = Reply::error(ErrorCode::RequestTooLarge, message);
                    send(&mut stream, &reply).await?;
                }
            }
        }
    }
}

async fn handle_line(
    stream: &mut UnixStream,
    line: &[u8],
    handle: &SupervisorHandle,
    hello: &Hello,
) -> io::Result<()> {
    let request = match parse_request(line) {
        Ok(request) => request,
        Err(body) => return send(stream, &Reply::Error(body)).await,
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
                Err(err) => Reply::error(err.code, err.message),
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
            let line = encode_line(&Reply::Stream(value)).map_err(io::Error::other)?;
            writer.write_all(&line).await?;
            send_snapshot = false;
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    let ended = Reply::Ok(serde_json::Value::String("supervisor ended".into()));
                    let line = encode_line(&ended).map_err(io::Error::other)?;
                    return writer.write_all(&line).await;
                }
                send_snapshot = true;
            }
            event = events.recv() => match event {
                Ok(event) => {
                    let value = serde_json::json!({ "event": event });
                    let line = encode_line(&Reply::Stream(value)).map_err(io::Error::other)?;
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
