//! The `http` probe: one GET over a TCP stream, spoken by hyper's HTTP/1.1 client.
//!
//! Owns: the HTTP exchange of a probe and the short reason it fails with, for `fleet
//! ps`. It decides nothing about the service, follows no redirect, and sets no timeout:
//! the caller cuts the whole exchange at the probe's `timeout`.
//!
//! # Theory of operation
//! `hyper::client::conn::http1::handshake` splits the stream into a request sender and
//! a connection future that does the socket IO. Both are polled here, in the probe's
//! own future, rather than the connection spawned as a task: when the probe ends or
//! is cut at its timeout, dropping the future closes the socket and nothing outlives
//! it. The status line decides; only with `expect_body` is the body read, as hyper
//! decodes it (chunked, `Content-Length` or to EOF), frame by frame up to
//! [`MAX_BODY`], stopping as soon as the text is seen. Nothing ever waits for the
//! server to close the connection, so a keep-alive server passes as soon as it has
//! answered.

use std::error::Error as _;
use std::io;
use std::pin::pin;

use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{HOST, LOCATION, USER_AGENT};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::manifest::HttpTarget;

/// How much of a body is searched for `expect_body`: a health page is small, and a
/// service's size claims are not trusted with fleet's memory.
pub const MAX_BODY: usize = 64 * 1024;

/// A reason phrase or `Location` longer than this is cut, so that one line of `fleet
/// ps` stays one line.
const MAX_QUOTED: usize = 80;

/// Connects to the target's host and port, then runs [`exchange`].
pub async fn get(target: &HttpTarget, expect_body: Option<&str>) -> Result<(), String> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|err| describe_io(&err))?;
    exchange(stream, target, expect_body).await
}

/// One GET of `target` over an already connected `stream`: a 2xx status passes, and
/// the body must then contain `expect_body` when given. Any other status fails with
/// its code and reason (`HTTP 503 Service Unavailable`); a redirect is not followed.
pub async fn exchange(
    stream: TcpStream,
    target: &HttpTarget,
    expect_body: Option<&str>,
) -> Result<(), String> {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<&'static [u8]>>(TokioIo::new(stream))
            .await
            .map_err(|err| describe(&err))?;
    let request = Request::get(target.path_and_query.as_str())
        .header(HOST, target.host_header.as_str())
        .header(USER_AGENT, "fleet")
        .body(Empty::new())
        .map_err(|err| format!("cannot build the request: {err}"))?;
    let mut response = pin!(async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| describe(&err))?;
        judge(response, expect_body).await
    });
    let mut connection = pin!(connection);
    let mut connection_done = false;
    loop {
        tokio::select! {
            verdict = &mut response => return verdict,
            // The connection ends when the server closes it or breaks the protocol;
            // the request or body it was serving then fails with the reason, so keep
            // polling that to the end.
            _ = &mut connection, if !connection_done => connection_done = true,
        }
    }
}

/// The verdict on a response: its status, then, if asked, its body.
async fn judge(response: Response<Incoming>, expect_body: Option<&str>) -> Result<(), String> {
    let status = response.status();
    if !status.is_success() {
        return Err(status_failure(&response));
    }
    let Some(expected) = expect_body else {
        return Ok(());
    };
    let expected = expected.as_bytes();
    let mut body = response.into_body();
    let mut seen: Vec<u8> = Vec::new();
    while seen.len() < MAX_BODY {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|err| format!("reading the body: {}", describe(&err)))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        // Search only where a match could newly end: the text may straddle frames.
        let from = seen.len().saturating_sub(expected.len().saturating_sub(1));
        let room = MAX_BODY - seen.len();
        seen.extend_from_slice(&data[..data.len().min(room)]);
        if memchr::memmem::find(&seen[from..], expected).is_some() {
            return Ok(());
        }
    }
    let expected = String::from_utf8_lossy(expected);
    Err(if seen.len() >= MAX_BODY {
        format!(
            "HTTP {} but the first {} KiB of the body do not contain {expected:?}",
            status.as_u16(),
            MAX_BODY / 1024
        )
    } else {
        format!(
            "HTTP {} but the body does not contain {expected:?}",
            status.as_u16()
        )
    })
}

/// `HTTP 503 Service Unavailable`, with the server's own reason phrase if it sent
/// another, and where a redirect points: `HTTP 302 Found (to /login)`.
fn status_failure(response: &Response<Incoming>) -> String {
    let status: StatusCode = response.status();
    let reason = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
        Some(phrase) => Some(quoted(phrase.as_bytes())),
        None => status.canonical_reason().map(str::to_string),
    };
    let mut text = format!("HTTP {}", status.as_u16());
    if let Some(reason) = reason.filter(|reason| !reason.is_empty()) {
        text.push(' ');
        text.push_str(&reason);
    }
    if status.is_redirection()
        && let Some(location) = response.headers().get(LOCATION)
    {
        text.push_str(&format!(" (to {})", quoted(location.as_bytes())));
    }
    text
}

/// Text from the server, made printable and cut to [`MAX_QUOTED`] characters.
fn quoted(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTED)
        .collect();
    if text.chars().count() > MAX_QUOTED {
        out.push('…');
    }
    out
}

/// A hyper error as a short reason: an IO error inside it says more than hyper's
/// own words, a response that is not HTTP says so.
fn describe(err: &hyper::Error) -> String {
    if err.is_parse_too_large() {
        return "the response head is too large".to_string();
    }
    if err.is_parse() || err.is_parse_status() {
        return format!("not an HTTP response ({err})");
    }
    if err.is_incomplete_message() {
        return "the connection closed before a complete response".to_string();
    }
    let mut cause = err.source();
    while let Some(inner) = cause {
        if let Some(io) = inner.downcast_ref::<io::Error>() {
            return describe_io(io);
        }
        cause = inner.source();
    }
    err.to_string()
}

/// An IO error in lower case and without the errno: `connection refused`.
pub(super) fn describe_io(err: &io::Error) -> String {
    let known = match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::BrokenPipe => "the connection closed while sending the request",
        io::ErrorKind::TimedOut => "timed out",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::AddrNotAvailable => "address not available",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "connection failed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    /// Every wait in these tests has this deadline; a probe that hangs fails the test.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn target(host: &str, port: u16, path_and_query: &str) -> HttpTarget {
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        HttpTarget {
            url: format!("http://{bracketed}:{port}{path_and_query}"),
            host: host.to_string(),
            port,
            path_and_query: path_and_query.to_string(),
            host_header: format!("{bracketed}:{port}"),
        }
    }

    /// A server on `listener` that answers every connection with `parts`, written one
    /// by one with a pause between them (so they reach the client as separate reads),
    /// and then keeps the connection open: it never closes first. Each request head
    /// is sent on the returned channel.
    fn serve(listener: TcpListener, parts: Vec<&'static str>) -> mpsc::UnboundedReceiver<String> {
        let (heads, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let heads = heads.clone();
                let parts = parts.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                    for part in parts {
                        if stream.write_all(part.as_bytes()).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    // Keep-alive: hold the connection until the client drops it.
                    let _ = stream.read(&mut buffer).await;
                });
            }
        });
        received
    }

    async fn local_server(parts: Vec<&'static str>) -> (u16, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for a test server");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        (port, serve(listener, parts))
    }

    async fn probe(target: &HttpTarget, expect_body: Option<&str>) -> Result<(), String> {
        tokio::time::timeout(DEADLINE, get(target, expect_body))
            .await
            .unwrap_or_else(|_| panic!("the probe of {} hung", target.url))
    }

    #[tokio::test]
    async fn a_keep_alive_server_passes_without_closing() {
        let (port, mut heads) = local_server(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: keep-alive\r\n\r\nstatus ok",
        ])
        .await;
        let health = target("127.0.0.1", port, "/health?verbose=1");
        assert_eq!(probe(&health, None).await, Ok(()));
        assert_eq!(probe(&health, Some("ok")).await, Ok(()));
        assert_eq!(
            probe(&health, Some("ready")).await,
            Err("HTTP 200 but the body does not contain \"ready\"".to_string())
        );

        let head = heads.recv().await.expect("the server saw the request");
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "GET /health?verbose=1 HTTP/1.1", "{head}");
        let has = |line: &str| lines.iter().any(|l| l.eq_ignore_ascii_case(line));
        assert!(has(&format!("host: 127.0.0.1:{port}")), "{head}");
        assert!(has("user-agent: fleet"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_chunked_body_is_decoded_for_expect_body() {
        // "ready" arrives in the second chunk, split across the second and third,
        // so only the decoded body contains "ready-set": the raw bytes have a chunk
        // size between the halves.
        let (port, _heads) = local_server(vec![
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "9\r\nstarting,\r\n",
            "6\r\nready-\r\n",
            "3\r\nset\r\n",
            "0\r\n\r\n",
        ])
        .await;
        let health = target("127.0.0.1", port, "/");
        assert_eq!(probe(&health, Some("ready-set")).await, Ok(()));
        assert_eq!(
            probe(&health, Some("\r\n3\r\n")).await,
            Err("HTTP 200 but the body does not contain \"\\r\\n3\\r\\n\"".to_string())
        );
    }

    #[tokio::test]
    async fn a_body_read_to_eof_is_searched() {
        // HTTP/1.0 without a length: the body ends when the server closes.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("loopback");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\n\r\nall systems go")
                    .await;
            }
        });
        let health = target("127.0.0.1", port, "/");
        assert_eq!(probe(&health, Some("systems go")).await, Ok(()));
    }

    #[tokio::test]
    async fn a_redirect_fails_with_its_code_and_is_not_followed() {
        let (port, mut heads) = local_server(vec![
            "HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        let health = target("127.0.0.1", port, "/health");
        assert_eq!(
            probe(&health, None).await,
            Err("HTTP 302 Found (to /login)".to_string())
        );
        let head = heads.recv().await.expect("the server saw the request");
        assert!(head.starts_with("GET /health "), "{head}");
        // Give a follower time to come back, then check that nobody did.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(heads.try_recv().is_err(), "the redirect was followed");
    }

    #[tokio::test]
    async fn a_server_error_fails_with_code_and_reason() {
        let (port, _heads) = local_server(vec![
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
        ])
        .await;
        let health = target("127.0.0.1", port, "/");
        assert_eq!(
            probe(&health, Some("busy")).await,
            Err("HTTP 503 Service Unavailable".to_string())
        );
        let (port, _heads) = local_server(vec![
            "HTTP/1.1 500 Database Down\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        assert_eq!(
            probe(&target("127.0.0.1", port, "/"), None).await,
            Err("HTTP 500 Database Down".to_string())
        );
    }

    #[tokio::test]
    async fn an_ipv6_literal_is_bracketed_in_host() {
        let listener = match TcpListener::bind("[::1]:0").await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("skipped: cannot bind [::1] ({err})");
                return;
            }
        };
        let port = listener.local_addr().expect("address").port();
        let mut heads = serve(listener, vec!["HTTP/1.1 204 No Content\r\n\r\n"]);
        assert_eq!(probe(&target("::1", port, "/health"), None).await, Ok(()));
        let head = heads.recv().await.expect("the server saw the request");
        let host = format!("host: [::1]:{port}\r\n");
        assert!(head.to_ascii_lowercase().contains(&host), "{head}");
    }

    #[tokio::test]
    async fn garbage_is_not_an_http_response() {
        let (port, _heads) = local_server(vec!["SSH-2.0-OpenSSH_9.6\r\n\r\n"]).await;
        assert_eq!(
            probe(&target("127.0.0.1", port, "/"), None).await,
            Err("not an HTTP response (invalid HTTP version parsed)".to_string())
        );
    }

    #[tokio::test]
    async fn a_server_that_closes_without_answering_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("loopback");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
            }
        });
        assert_eq!(
            probe(&target("127.0.0.1", port, "/"), None).await,
            Err("the connection closed before a complete response".to_string())
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_connection_refused() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback");
            listener.local_addr().expect("address").port()
        };
        assert_eq!(
            probe(&target("127.0.0.1", port, "/"), None).await,
            Err("connection refused".to_string())
        );
    }

    #[tokio::test]
    async fn a_big_body_is_read_only_as_far_as_needed() {
        // A body far larger than MAX_BODY, served slowly after the first part: a pass
        // without expect_body does not read it, and expect_body stops at MAX_BODY.
        let filler: &'static str = Box::leak("x".repeat(MAX_BODY + 1024).into_boxed_str());
        let head: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\nhello ",
                100 * MAX_BODY
            )
            .into_boxed_str(),
        );
        let (port, _heads) = local_server(vec![head, filler]).await;
        let health = target("127.0.0.1", port, "/");
        assert_eq!(probe(&health, None).await, Ok(()));
        assert_eq!(probe(&health, Some("hello")).await, Ok(()));
        assert_eq!(
            probe(&health, Some("goodbye")).await,
            Err("HTTP 200 but the first 64 KiB of the body do not contain \"goodbye\"".to_string())
        );
    }

    #[tokio::test]
    async fn exchange_uses_the_stream_it_is_given() {
        // The probe connects nowhere itself: the target's port is unused here.
        let (port, _heads) =
            local_server(vec!["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]).await;
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("the test server listens");
        let elsewhere = target("127.0.0.1", 1, "/");
        let outcome = tokio::time::timeout(DEADLINE, exchange(stream, &elsewhere, Some("ok")))
            .await
            .expect("the exchange hung");
        assert_eq!(outcome, Ok(()));
    }
}
