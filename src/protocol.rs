//! The control protocol on the wire: request and reply lines, their framing
//! ([`RequestFramer`]), and the stable error codes. Data and pure parsing only; the
//! socket ends are `control::client` and `supervisor::server`.
//!
//! A leaf: it depends on [`crate::event`] (a request carries a [`Command`]) and on
//! nothing else in the crate, so the client, the server and tests share one definition.
//!
//! # Protocol
//! A Unix stream socket per project, newline-delimited JSON. Each request is one line:
//! `{"version":1,"op":"ps"}`. The server answers with zero or more stream lines
//! (`{"stream":...}`) and then exactly one final line, `{"ok":...}` or
//! `{"error":{"code":"unknown_service","message":"..."}}`. Error codes are part of
//! the interface: they are never renamed or reused (see [`ErrorCode`]).
//!
//! A connection may carry many requests, one after another. Its limits, which only a
//! broken or hostile client meets: a request line is at most [`MAX_REQUEST`] bytes
//! and must arrive within [`REQUEST_DEADLINE`]; each line the server writes must be
//! taken within [`WRITE_DEADLINE`]. Passing the first two gets an error reply, and
//! every one of them closes the connection.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::event::Command;

/// Version of the wire protocol; a client and a server of different versions refuse
/// each other with `unsupported_version` instead of misreading each other.
pub const PROTOCOL_VERSION: u32 = 1;

/// Requests longer than this are refused: every legitimate request is a few hundred
/// bytes, and a bound keeps a broken or hostile client from growing the supervisor.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request line must arrive whole within this time, counted from when the server is
/// ready for it (the connection is accepted, or the previous reply is sent). Clients
/// write a request in one go, so only a stuck or hostile client (one that connects and
/// never sends, or sends a byte a second) reaches it; it then gets `request_timeout`
/// and the connection is closed, freeing its slot and file descriptor.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// A reply or stream line the client does not take within this time (the socket's
/// kernel buffer stays full) ends the connection: a `subscribe` client that stopped
/// reading is disconnected rather than holding a slot and its buffer forever.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Stable error codes. Never rename or reuse one; add new ones at the end.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, not an object, or an object that is no valid request.
    BadRequest,
    /// Longer than [`MAX_REQUEST`]; the connection is closed.
    RequestTooLarge,
    /// An `op` this server does not know.
    UnknownRequest,
    /// A `version` other than [`PROTOCOL_VERSION`].
    UnsupportedVersion,
    /// A command names a service the manifest does not have.
    UnknownService,
    /// The supervisor is stopping and takes no more commands.
    ShuttingDown,
    /// `reload` found an invalid manifest; nothing changed.
    InvalidManifest,
    /// The client runs as another user than the supervisor.
    PermissionDenied,
    /// Something failed inside the supervisor.
    Internal,
    /// The request is well formed but asks for what cannot be (a replica count beyond
    /// what the service's ports allow, busy ports); nothing changed.
    InvalidArgument,
    /// No complete request line arrived within [`REQUEST_DEADLINE`]; the connection
    /// is closed.
    RequestTimeout,
    /// The supervisor already serves as many connections as it allows; try again
    /// when one ends.
    TooManyConnections,
    /// A code this build does not know, from a newer supervisor: kept as sent, so a
    /// client still shows it.
    Other(String),
}

impl ErrorCode {
    /// Every code this build knows, in the order they were added.
    pub const KNOWN: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::RequestTooLarge,
        ErrorCode::UnknownRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownService,
        ErrorCode::ShuttingDown,
        ErrorCode::InvalidManifest,
        ErrorCode::PermissionDenied,
        ErrorCode::Internal,
        ErrorCode::InvalidArgument,
        ErrorCode::RequestTimeout,
        ErrorCode::TooManyConnections,
    ];

    /// The code on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::UnknownRequest => "unknown_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownService => "unknown_service",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::InvalidManifest => "invalid_manifest",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Other(code) => code,
        }
    }

    /// The code a wire string names; an unknown one is kept as [`ErrorCode::Other`].
    pub fn parse(code: &str) -> ErrorCode {
        ErrorCode::KNOWN
            .into_iter()
            .find(|known| known.as_str() == code)
            .unwrap_or_else(|| ErrorCode::Other(code.to_string()))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&code))
    }
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLine {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Who are you: protocol version, project, supervisor pid.
    Hello,
    /// The current snapshot.
    Ps,
    /// Snapshots (on every change) and events, until the client goes away.
    Subscribe,
    /// Start, stop, restart, redeploy, down, kill, reload.
    Command { command: Command },
}

/// The `op` of each [`Request`], to tell an unknown request from a malformed one.
const KNOWN_OPS: [&str; 4] = ["hello", "ps", "subscribe", "command"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// A line from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(serde_json::Value),
    Error(ErrorBody),
    Stream(serde_json::Value),
}

impl Reply {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error(ErrorBody {
            code,
            message: message.into(),
        })
    }
}

/// What `hello` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub project: String,
    pub manifest: String,
    pub pid: u32,
}

/// One line on the wire: the JSON of `message` and its `\n`.
pub fn encode_line(message: &impl Serialize) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    Ok(line)
}

/// What the server makes of the bytes a client sends, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One request line, without its `\n`; never blank.
    Line(Vec<u8>),
    /// A request longer than the limit: it is answered `request_too_large` once, and
    /// its bytes up to the next `\n` are dropped.
    TooLarge,
}

/// Splits the byte stream of one connection into request lines. Pure, so the server's
/// framing can be tested and fuzzed without a socket: the server hands it each read
/// and answers the frames it returns.
///
/// It holds at most the limit plus one read of bytes: a line that outgrows the limit
/// is reported and then skipped, never buffered.
#[derive(Debug)]
pub struct RequestFramer {
    limit: usize,
    pending: Vec<u8>,
    /// Inside an oversized request, already reported: drop bytes up to its `\n`.
    discarding: bool,
}

impl RequestFramer {
    /// A framer refusing lines longer than `limit` bytes ([`MAX_REQUEST`] on the
    /// socket).
    pub fn new(limit: usize) -> RequestFramer {
        RequestFramer {
            limit,
            pending: Vec::new(),
            discarding: false,
        }
    }

    /// Takes the bytes of one read and returns the frames they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        self.pending.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while let Some(newline) = memchr::memchr(b'\n', &self.pending) {
            let line: Vec<u8> = self.pending.drain(..=newline).collect();
            if self.discarding {
                // The tail of an oversized request, already answered.
                self.discarding = false;
                continue;
            }
            let line = &line[..line.len() - 1];
            if line.len() > self.limit {
                // Whole in this read; one that arrived in pieces was refused below.
                frames.push(Frame::TooLarge);
                continue;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            frames.push(Frame::Line(line.to_vec()));
        }
        if self.pending.len() > self.limit {
            if !self.discarding {
                frames.push(Frame::TooLarge);
            }
            self.discarding = true;
            self.pending.clear();
        }
        frames
    }

    /// Bytes held for a line not yet complete.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Gives back memory a long request left, keeping at least `capacity` bytes.
    pub fn shrink_to(&mut self, capacity: usize) {
        self.pending.shrink_to(capacity);
    }
}

/// Reads one request line (without its `\n`), or says with which error to answer it.
/// The version is checked before the shape, so a client of another version learns
/// that rather than that its request is malformed.
pub fn parse_request(line: &[u8]) -> Result<Request, ErrorBody> {
    let error = |code, message: String| ErrorBody { code, message };
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|err| error(ErrorCode::BadRequest, format!("not a JSON object: {err}")))?;
    if !value.is_object() {
        let message = "a request is a JSON object like {\"version\":1,\"op\":\"ps\"}";
        return Err(error(ErrorCode::BadRequest, message.to_string()));
    }
    let version = value.get("version").and_then(|v| v.as_u64());
    if version != Some(u64::from(PROTOCOL_VERSION)) {
        let message = format!(
            "this supervisor speaks protocol version {PROTOCOL_VERSION}; the request has {}",
            version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none".into())
        );
        return Err(error(ErrorCode::UnsupportedVersion, message));
    }
    match serde_json::from_value::<RequestLine>(value.clone()) {
        Ok(line) => Ok(line.request),
        Err(err) => match value.get("op").and_then(|op| op.as_str()) {
            Some(op) if !KNOWN_OPS.contains(&op) => Err(error(
                ErrorCode::UnknownRequest,
                format!("unknown request `{op}`"),
            )),
            _ => Err(error(
                ErrorCode::BadRequest,
                format!("malformed request: {err}"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_to_their_stable_strings() -> serde_json::Result<()> {
        let wire = [
            "bad_request",
            "request_too_large",
            "unknown_request",
            "unsupported_version",
            "unknown_service",
            "shutting_down",
            "invalid_manifest",
            "permission_denied",
            "internal",
            "invalid_argument",
            "request_timeout",
            "too_many_connections",
        ];
        assert_eq!(wire.len(), ErrorCode::KNOWN.len());
        for (code, text) in ErrorCode::KNOWN.iter().zip(wire) {
            assert_eq!(serde_json::to_string(code)?, format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<ErrorCode>(&format!("\"{text}\""))?,
                *code
            );
            assert_eq!(code.to_string(), text);
        }
        Ok(())
    }

    #[test]
    fn an_unknown_error_code_survives_the_round_trip() -> serde_json::Result<()> {
        let body: ErrorBody =
            serde_json::from_str(r#"{"code":"too_many_replicas","message":"m"}"#)?;
        assert_eq!(body.code, ErrorCode::Other("too_many_replicas".into()));
        assert_eq!(
            serde_json::to_string(&body)?,
            r#"{"code":"too_many_replicas","message":"m"}"#
        );
        Ok(())
    }

    #[test]
    fn replies_keep_their_wire_shape() -> serde_json::Result<()> {
        let reply = Reply::error(ErrorCode::UnknownService, "unknown service: db");
        assert_eq!(
            String::from_utf8_lossy(&encode_line(&reply)?),
            "{\"error\":{\"code\":\"unknown_service\",\"message\":\"unknown service: db\"}}\n"
        );
        let line = RequestLine {
            version: PROTOCOL_VERSION,
            request: Request::Command {
                command: Command::Stop {
                    services: vec!["db".into()],
                },
            },
        };
        assert_eq!(
            serde_json::to_string(&line)?,
            r#"{"version":1,"op":"command","command":{"command":"stop","services":["db"]}}"#
        );
        Ok(())
    }

    #[test]
    fn requests_parse_or_name_their_error() {
        let code = |line: &str| parse_request(line.as_bytes()).map_err(|body| body.code);
        assert_eq!(code(r#"{"version":1,"op":"ps"}"#), Ok(Request::Ps));
        assert_eq!(code("nope"), Err(ErrorCode::BadRequest));
        assert_eq!(code("[1]"), Err(ErrorCode::BadRequest));
        assert_eq!(code(r#"{"op":"ps"}"#), Err(ErrorCode::UnsupportedVersion));
        assert_eq!(
            code(r#"{"version":2,"op":"ps"}"#),
            Err(ErrorCode::UnsupportedVersion)
        );
        assert_eq!(
            code(r#"{"version":1,"op":"fly"}"#),
            Err(ErrorCode::UnknownRequest)
        );
        assert_eq!(
            code(r#"{"version":1,"op":"command"}"#),
            Err(ErrorCode::BadRequest)
        );
    }

    fn lines(frames: Vec<Frame>) -> Vec<String> {
        frames
            .into_iter()
            .map(|frame| match frame {
                Frame::Line(line) => String::from_utf8_lossy(&line).into_owned(),
                Frame::TooLarge => "<too large>".to_string(),
            })
            .collect()
    }

    #[test]
    fn the_framer_joins_partial_reads_and_skips_blank_lines() {
        let mut framer = RequestFramer::new(MAX_REQUEST);
        assert_eq!(lines(framer.push(b"{\"version\":1,")), Vec::<String>::new());
        assert_eq!(framer.buffered(), 13);
        assert_eq!(
            lines(framer.push(b"\"op\":\"ps\"}\n\n  \r\n\xff\xfe\nnext")),
            [r#"{"version":1,"op":"ps"}"#, "\u{fffd}\u{fffd}"]
        );
        assert_eq!(lines(framer.push(b"\n")), ["next"]);
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn the_framer_reports_an_oversized_request_once_and_skips_to_its_end() {
        let mut framer = RequestFramer::new(8);
        assert_eq!(lines(framer.push(b"0123456789")), ["<too large>"]);
        assert_eq!(framer.buffered(), 0);
        assert_eq!(lines(framer.push(b"more of it")), Vec::<String>::new());
        assert_eq!(framer.buffered(), 0);
        assert_eq!(lines(framer.push(b"end\nps\n")), ["ps"]);
    }

    /// Found by the `protocol` fuzz target: a line over the limit was served when its
    /// `\n` came in the same read as the bytes that took it over, and refused when the
    /// read ended before it, so what a client got depended on how its bytes were split.
    #[test]
    fn a_line_over_the_limit_is_refused_however_the_reads_split_it() {
        let stream = b"0123456789\nps\n";
        let mut whole = RequestFramer::new(8);
        assert_eq!(lines(whole.push(stream)), ["<too large>", "ps"]);
        let mut split = RequestFramer::new(8);
        let mut frames = split.push(&stream[..9]);
        frames.extend(split.push(&stream[9..]));
        assert_eq!(lines(frames), ["<too large>", "ps"]);
    }
}
