//! Single values of the manifest, read and checked: durations, sizes, counts,
//! choices, signals, port numbers, `HOST:PORT` addresses, port mappings, volumes,
//! `http://` probe URLs, globs, commands, folder paths and the lines of an
//! `env_file`.
//!
//! Owns the syntax of each value and the wording of its errors. The pure parsers
//! (`parse_duration`, `parse_size`, `parse_http_url`, ...) know nothing of TOML or
//! spans; the [`Checker`] methods here wrap them for one TOML value and turn a
//! problem into a diagnostic at that value's span. Must not know which key a value
//! belongs to or what other keys say: that is the walk's (`validate`) business.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::diagnostic::{suggest, Diagnostic};
use super::raw::{one_of, Kind, Span, Value};
use super::validate::Checker;
use super::{CommandLine, HttpTarget, PortMapping, StopSignal, MAX_DURATION};

/// Ports and sockets bind to loopback unless told otherwise: a dev service should not
/// be reachable from the network by accident.
pub(super) const DEFAULT_HOST_IP: &str = "127.0.0.1";

/// Says what [`MAX_DURATION`] is, in manifest syntax.
pub(super) const TOO_LONG_HELP: &str = "the longest duration is 87600h (10 years)";

const DURATION_EXPECTED: &str =
    "expected a duration with a unit, like \"250ms\", \"10s\" or \"2m\"";
const PATH_HELP: &str = "relative paths start from the manifest's folder";

impl Checker<'_> {
    /// A string or an array of strings, not empty, whose program is not empty.
    pub(super) fn command_line(&mut self, value: &Value, what: &str) -> Option<CommandLine> {
        match &value.kind {
            Kind::String(script) => {
                if script.trim().is_empty() {
                    self.error(format!("{what} is empty"), value.span.clone());
                    return None;
                }
                Some(CommandLine::Shell(script.clone()))
            }
            Kind::Array(items) => {
                let Some(program) = items.first() else {
                    self.error(format!("{what} is empty"), value.span.clone());
                    return None;
                };
                let mut argv = Vec::new();
                for item in items {
                    match &item.kind {
                        Kind::String(arg) => argv.push(arg.clone()),
                        _ => self.push(item.expected("a string")),
                    }
                }
                if argv.len() != items.len() {
                    return None;
                }
                if argv[0].trim().is_empty() {
                    self.error(
                        format!("the program in {what} is empty"),
                        program.span.clone(),
                    );
                    return None;
                }
                Some(CommandLine::Argv(argv))
            }
            _ => {
                self.push(value.expected("a string or an array of strings"));
                None
            }
        }
    }

    /// A folder path, resolved against the manifest's folder, that must exist.
    pub(super) fn existing_dir(&mut self, value: &Value, what: &str) -> Option<PathBuf> {
        let text = value.string(&mut self.diagnostics)?;
        let path = normalize(&self.root.join(text));
        if path.is_dir() {
            return Some(path);
        }
        let problem = if path.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        let diagnostic = self.error(format!("{what} `{text}` {problem}"), value.span.clone());
        if Path::new(text).is_relative() {
            diagnostic.help = Some(PATH_HELP.to_string());
        }
        None
    }

    /// Reads `KEY=VALUE` lines; `#` comments, blank lines and an `export ` prefix are
    /// allowed, and one pair of matching quotes around a value is removed. Problems are
    /// reported at the `env_file` value, since the file itself has no span here.
    pub(super) fn read_env_file(
        &mut self,
        file: &str,
        span: Span,
        env: &mut BTreeMap<String, String>,
    ) {
        let path = self.root.join(file);
        let text = match super::read_text_file(&path) {
            Ok(text) => text,
            Err(err) => {
                let diagnostic = self.error(format!("cannot read env_file `{file}`: {err}"), span);
                if Path::new(file).is_relative() && err.kind() == std::io::ErrorKind::NotFound {
                    diagnostic.help = Some(PATH_HELP.to_string());
                }
                return;
            }
        };
        for entry in env_file_entries(&text) {
            match entry {
                Ok((key, value)) => {
                    env.insert(key, value);
                }
                Err(line) => {
                    self.error(
                        format!("invalid line {line} in env_file `{file}`"),
                        span.clone(),
                    )
                    .help = Some("expected `KEY=VALUE`".to_string());
                }
            }
        }
    }

    /// One of `options`, by index; else an error with a suggestion or the list.
    pub(super) fn choice(&mut self, value: &Value, what: &str, options: &[&str]) -> Option<usize> {
        let text = value.string(&mut self.diagnostics)?;
        if let Some(index) = options.iter().position(|option| *option == text) {
            return Some(index);
        }
        let diagnostic = Diagnostic::new(format!("unknown {what} `{text}`"), value.span.clone());
        let diagnostic = match suggest(text, options.iter().copied()) {
            Some(suggestion) => diagnostic.with_suggestion(Some(suggestion)),
            None => diagnostic.with_help(format!("expected {}", one_of(options))),
        };
        self.push(diagnostic);
        None
    }

    /// An integer that fits a `u32` (counts: restarts, retries, files kept).
    pub(super) fn count(&mut self, value: &Value) -> Option<u32> {
        let integer = value.integer(&mut self.diagnostics)?;
        match u32::try_from(integer) {
            Ok(count) => Some(count),
            Err(_) if integer < 0 => {
                self.error(
                    format!("expected a count, found {integer}"),
                    value.span.clone(),
                );
                None
            }
            Err(_) => {
                self.error(format!("{integer} is too large"), value.span.clone());
                None
            }
        }
    }

    pub(super) fn size(&mut self, value: &Value) -> Option<u64> {
        let size = match &value.kind {
            Kind::Integer(_) => {
                let integer = value.integer(&mut self.diagnostics)?;
                u64::try_from(integer).map_err(|_| SizeError::Invalid)
            }
            Kind::String(text) => parse_size(text),
            _ => {
                self.push(value.expected("a size"));
                return None;
            }
        };
        match size {
            Ok(0) => {
                self.error("the size must be more than 0 bytes", value.span.clone());
                None
            }
            Ok(size) => Some(size),
            Err(SizeError::TooLarge) => {
                let message = match &value.kind {
                    Kind::String(text) => format!("the size `{text}` is too large"),
                    _ => "the size is too large".to_string(),
                };
                self.error(message, value.span.clone()).help =
                    Some("sizes go up to 16 EiB (2^64 bytes)".to_string());
                None
            }
            Err(SizeError::Invalid) => {
                self.error(
                    "expected a size, like \"512KB\", \"10MB\" or \"1GB\"",
                    value.span.clone(),
                );
                None
            }
        }
    }

    pub(super) fn duration_or(&mut self, value: Option<&Value>, default: Duration) -> Duration {
        value
            .and_then(|value| self.duration(value))
            .unwrap_or(default)
    }

    pub(super) fn nonzero_duration_or(
        &mut self,
        value: Option<&Value>,
        default: Duration,
    ) -> Duration {
        value
            .and_then(|value| self.nonzero_duration(value))
            .unwrap_or(default)
    }

    pub(super) fn nonzero_duration(&mut self, value: &Value) -> Option<Duration> {
        match self.duration(value)? {
            Duration::ZERO => {
                self.error("the duration must be more than 0", value.span.clone());
                None
            }
            duration => Some(duration),
        }
    }

    pub(super) fn duration(&mut self, value: &Value) -> Option<Duration> {
        let text = match &value.kind {
            Kind::String(text) => text,
            Kind::Integer(Some(integer)) => {
                self.error(DURATION_EXPECTED, value.span.clone()).help =
                    Some(format!("write it as a string with a unit: \"{integer}s\""));
                return None;
            }
            _ => {
                self.push(value.expected("a duration"));
                return None;
            }
        };
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(DurationError::NoUnit) => {
                self.error(DURATION_EXPECTED, value.span.clone()).help =
                    Some(format!("add a unit: \"{}s\"", text.trim()));
                None
            }
            Err(DurationError::Invalid) => {
                self.error(DURATION_EXPECTED, value.span.clone()).help = Some(
                    "the units are `ms`, `s`, `m` and `h`, and they combine: \"1m30s\"".to_string(),
                );
                None
            }
            Err(DurationError::TooLong) => {
                self.error(
                    format!("the duration `{text}` is too long"),
                    value.span.clone(),
                )
                .help = Some(TOO_LONG_HELP.to_string());
                None
            }
        }
    }

    pub(super) fn signal(&mut self, value: &Value) -> Option<StopSignal> {
        let text = value.string(&mut self.diagnostics)?;
        let wanted = match parse_signal(text) {
            Ok(signal) => return Some(signal),
            Err(wanted) => wanted,
        };
        let names: Vec<&str> = nix::sys::signal::Signal::iterator()
            .map(|signal| signal.as_str())
            .collect();
        let diagnostic = Diagnostic::new(format!("unknown signal `{text}`"), value.span.clone())
            .with_suggestion(suggest(&wanted, names.iter().copied()));
        let diagnostic = if diagnostic.help.is_none() {
            diagnostic.with_help("common stop signals are SIGTERM, SIGINT, SIGQUIT and SIGHUP")
        } else {
            diagnostic
        };
        self.push(diagnostic);
        None
    }

    pub(super) fn port_number(&mut self, value: &Value) -> Option<u16> {
        let integer = match &value.kind {
            Kind::Integer(_) => value.integer(&mut self.diagnostics)?,
            _ => {
                self.push(value.expected("a port number"));
                return None;
            }
        };
        match u16::try_from(integer) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                self.error(
                    format!("port {integer} is out of range"),
                    value.span.clone(),
                )
                .help = Some("ports are 1 to 65535".to_string());
                None
            }
        }
    }

    /// A port number (on the default host) or a `"HOST:PORT"` string.
    pub(super) fn host_port(&mut self, value: &Value, what: &str) -> Option<(String, u16)> {
        match &value.kind {
            Kind::String(text) => {
                let parsed = parse_host_port(text);
                if parsed.is_none() {
                    self.error(
                        format!("invalid address `{text}` in {what}"),
                        value.span.clone(),
                    )
                    .help = Some(
                        "expected a port or \"HOST:PORT\", like 7001 or \"127.0.0.1:7001\""
                            .to_string(),
                    );
                }
                parsed
            }
            Kind::Integer(_) => self
                .port_number(value)
                .map(|port| (DEFAULT_HOST_IP.to_string(), port)),
            _ => {
                self.push(value.expected("a port or \"HOST:PORT\""));
                None
            }
        }
    }

    pub(super) fn globs(&mut self, value: Option<&Value>) -> Vec<String> {
        let Some(value) = value else {
            return Vec::new();
        };
        let mut globs = Vec::new();
        for (pattern, span) in value.strings(&mut self.diagnostics).unwrap_or_default() {
            match glob_problem(pattern) {
                None => globs.push(pattern.to_string()),
                Some(problem) => {
                    self.error(problem, span);
                }
            }
        }
        globs
    }
}

/// A stop signal by name, with or without `SIG`, in any case (`"term"`, `"SIGINT"`);
/// else the name looked for, `SIG` and upper case, to suggest a known one.
pub(crate) fn parse_signal(text: &str) -> Result<StopSignal, String> {
    let upper = text.trim().to_ascii_uppercase();
    let wanted = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::iterator()
        .find(|signal| signal.as_str() == wanted)
        .map(|signal| StopSignal {
            name: signal.as_str(),
            number: signal as i32,
        })
        .ok_or(wanted)
}

/// `"HOST:PORT"`, the host maybe an IPv6 address in brackets (`"[::1]:7001"`).
pub(crate) fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse::<u16>().ok().filter(|port| *port > 0)?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// What is wrong with a `watch` or `ignore` glob, if anything.
pub(crate) fn glob_problem(pattern: &str) -> Option<String> {
    if pattern.trim().is_empty() {
        return Some("empty glob".to_string());
    }
    globset::Glob::new(pattern)
        .err()
        .map(|err| format!("invalid glob `{pattern}`: {}", err.kind()))
}

pub(super) fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !normal.pop() {
                    normal.push(component);
                }
            }
            other => normal.push(other),
        }
    }
    normal
}

/// Service names become log file names, env values and container names, so they
/// follow Docker's container-name rule.
pub(super) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `execve` takes `NAME=value` strings, so a name can't hold `=` or NUL.
pub(crate) fn is_valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0']) && !name.contains(char::is_whitespace)
}

/// The `KEY=VALUE` pairs of an env file's text, in order; a line that is not one is
/// `Err(line number)`. `#` comments, blank lines and an `export ` prefix are allowed, and
/// one pair of matching quotes around a value is removed.
pub(crate) fn env_file_entries(text: &str) -> Vec<Result<(String, String), usize>> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        entries.push(match line.split_once('=') {
            Some((key, value)) if is_valid_env_name(key.trim()) => {
                Ok((key.trim().to_string(), unquote(value.trim()).to_string()))
            }
            _ => Err(index + 1),
        });
    }
    entries
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// Why a duration does not parse. The text is the command line's (a flag's value);
/// the manifest's diagnostics say more, under the value's span.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// A plain number: the unit is missing.
    #[error("{DURATION_WITH_UNIT}")]
    NoUnit,
    #[error("{DURATION_WITH_UNIT}")]
    Invalid,
    /// Longer than [`MAX_DURATION`].
    #[error("{TOO_LONG_HELP}")]
    TooLong,
}

/// What a duration flag must look like.
const DURATION_WITH_UNIT: &str = "expected a duration with a unit, like \"30s\" or \"2m\"";

/// `"250ms"`, `"10s"`, `"2m"`, `"1h"`, combined (`"1m30s"`) and with decimals (`"1.5s"`).
pub(super) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    const UNITS: &[(&str, u128)] = &[
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    /// Digits after the point that count; more precision than a nanosecond of an hour is noise.
    const MAX_FRACTION_DIGITS: usize = 12;
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Invalid);
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(DurationError::NoUnit);
    }
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty())
            || !fraction.chars().all(|c| c.is_ascii_digit())
        {
            return Err(DurationError::Invalid);
        }
        let unit_nanos = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, nanos)| *nanos)
            .ok_or(DurationError::Invalid)?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| DurationError::TooLong)?
        };
        let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction.parse().map_err(|_| DurationError::Invalid)?;
            digits * unit_nanos / 10u128.pow(fraction.len() as u32)
        };
        total_nanos = whole
            .checked_mul(unit_nanos)
            .and_then(|nanos| nanos.checked_add(fraction_nanos))
            .and_then(|nanos| nanos.checked_add(total_nanos))
            .ok_or(DurationError::TooLong)?;
    }
    if total_nanos > MAX_DURATION.as_nanos() {
        return Err(DurationError::TooLong);
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| DurationError::TooLong)?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// The shortest way to write a duration back in manifest syntax.
pub(super) fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{duration:?}")
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SizeError {
    Invalid,
    /// More than a `u64` of bytes.
    TooLarge,
}

/// `"512KB"`, `"10MB"`, `"1GB"` (powers of 1000), `"64KiB"` (powers of 1024), `"100B"`
/// or a plain number of bytes; units are case-insensitive.
pub(crate) fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let digits_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let digits = &text[..digits_len];
    if digits.is_empty() {
        return Err(SizeError::Invalid);
    }
    let multiplier: u64 = match text[digits_len..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1024,
        "mib" => 1024 * 1024,
        "gib" => 1024 * 1024 * 1024,
        _ => return Err(SizeError::Invalid),
    };
    // Only digits are left, so a failed parse means too many of them.
    let number: u64 = digits.parse().map_err(|_| SizeError::TooLarge)?;
    number.checked_mul(multiplier).ok_or(SizeError::TooLarge)
}

pub(super) const HTTPS_UNSUPPORTED: &str = "https probes are not supported";

/// `http://host[:port][/path][?query]` -> an [`HttpTarget`]: port 80 and path `/`
/// unless given, the query kept, the fragment dropped, an IPv6 address in brackets.
/// Only plain HTTP: probes talk to local dev services, and fleet carries no TLS client.
pub(crate) fn parse_http_url(url: &str) -> Result<HttpTarget, &'static str> {
    let scheme_is = |scheme: &str| {
        url.get(..scheme.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
    };
    if !scheme_is("http://") {
        return Err(if scheme_is("https://") {
            HTTPS_UNSUPPORTED
        } else {
            "it must start with http://"
        });
    }
    let rest = &url["http://".len()..];
    let rest = rest.split('#').next().unwrap_or_default();
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err("credentials are not supported");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("unclosed `[` in the host")?;
        let address: Ipv6Addr = host
            .parse()
            .map_err(|_| "the host in brackets is not an IPv6 address")?;
        match after.strip_prefix(':') {
            Some(port) => (address.to_string(), Some(port)),
            None if after.is_empty() => (address.to_string(), None),
            None => return Err("unexpected text after the host"),
        }
    } else {
        if authority.matches(':').count() > 1 {
            return Err("an IPv6 address must be in brackets, like http://[::1]:8080/");
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("the host is missing");
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err("the host has a character a host name cannot have");
        }
        (host.to_string(), port)
    };
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or("the port is not a number from 1 to 65535")?,
        None => 80,
    };
    let path_and_query = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    // Checked with the parser the probe's request is built with, so that it can never
    // fail there.
    if hyper::http::uri::PathAndQuery::try_from(path_and_query.as_str()).is_err() {
        return Err("the path has a character that must be percent-encoded");
    }
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    // As browsers and curl do, the default port is left out of `Host`.
    let host_header = if port == 80 {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    Ok(HttpTarget {
        url: url.to_string(),
        host,
        port,
        path_and_query,
        host_header,
    })
}

impl HttpTarget {
    /// The same target on another port (a replica's), the URL and `Host` following.
    pub fn with_port(&self, port: u16) -> HttpTarget {
        let bracketed = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let authority = if port == 80 {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        HttpTarget {
            url: format!("http://{authority}{}", self.path_and_query),
            host: self.host.clone(),
            port,
            path_and_query: self.path_and_query.clone(),
            host_header: authority,
        }
    }
}

/// `"6380:6380"` or `"127.0.0.1:6380:6380"` (an IPv6 host IP may be bracketed); the
/// host port may be a range, `"8080-8082:80"`, one port per replica.
pub(crate) fn parse_port_mapping(text: &str) -> Option<PortMapping> {
    let mut parts: Vec<&str> = text.trim().rsplitn(3, ':').collect();
    parts.reverse();
    let port = |text: &str| text.parse::<u16>().ok().filter(|port| *port > 0);
    // `8080` or `8080-8082` (one host port per replica), never backwards.
    let host_ports = |text: &str| -> Option<(u16, Option<u16>)> {
        match text.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (port(first)?, port(last)?);
                (first <= last).then_some((first, Some(last)))
            }
            None => Some((port(text)?, None)),
        }
    };
    let (host_ip, (host, host_last), container) = match parts.as_slice() {
        [host, container] => (
            DEFAULT_HOST_IP.to_string(),
            host_ports(host)?,
            port(container)?,
        ),
        [ip, host, container] => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            ip.parse::<IpAddr>().ok()?;
            (ip.to_string(), host_ports(host)?, port(container)?)
        }
        _ => return None,
    };
    Some(PortMapping {
        host_ip,
        host,
        container,
        host_last,
    })
}

/// `"./data:/data"` (bind mount, host made absolute), `"name:/data"` (named volume),
/// either optionally with `:ro` or `:rw`.
pub(crate) fn parse_volume(text: &str, root: &Path) -> Option<String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, mode) = match parts.as_slice() {
        [host, container] => (*host, *container, None),
        [host, container, mode] if matches!(*mode, "ro" | "rw") => (*host, *container, Some(*mode)),
        _ => return None,
    };
    if !container.starts_with('/') || host.is_empty() {
        return None;
    }
    let host = if host.starts_with('.') || host.starts_with('/') {
        normalize(&root.join(host)).to_string_lossy().into_owned()
    } else if is_valid_name(host) {
        host.to_string()
    } else {
        return None;
    };
    Some(match mode {
        Some("ro") => format!("{host}:{container}:ro"),
        _ => format!("{host}:{container}"),
    })
}

/// The last line of a regex error is the problem; the lines before repeat the pattern.
pub(super) fn regex_problem(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    last.trim().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::test_support::check;

    #[test]
    fn bad_durations() {
        check(
            "[services.a]\ncommand = \"a\"\nstop_timeout = 10\nrestart_window = \"60\"\n\
             backoff = { initial = \"1sec\", max = \"1s\" }\n",
            r#"
error: expected a duration with a unit, like "250ms", "10s" or "2m"
 --> fleet.toml:3:16
  |
3 | stop_timeout = 10
  |                ^^
  |
  = help: write it as a string with a unit: "10s"

error: expected a duration with a unit, like "250ms", "10s" or "2m"
 --> fleet.toml:4:18
  |
4 | restart_window = "60"
  |                  ^^^^
  |
  = help: add a unit: "60s"

error: expected a duration with a unit, like "250ms", "10s" or "2m"
 --> fleet.toml:5:23
  |
5 | backoff = { initial = "1sec", max = "1s" }
  |                       ^^^^^^
  |
  = help: the units are `ms`, `s`, `m` and `h`, and they combine: "1m30s"

error: could not load fleet.toml: 3 errors"#,
        );
    }

    #[test]
    fn unknown_signal_suggests_the_closest() {
        check(
            "[services.a]\ncommand = \"a\"\nstop_signal = \"SIGTREM\"\n[services.b]\ncommand = \"b\"\nstop_signal = \"stop-now\"\n",
            r#"
error: unknown signal `SIGTREM`
 --> fleet.toml:3:15
  |
3 | stop_signal = "SIGTREM"
  |               ^^^^^^^^^
  |
  = help: did you mean `SIGTERM`?

error: unknown signal `stop-now`
 --> fleet.toml:6:15
  |
6 | stop_signal = "stop-now"
  |               ^^^^^^^^^^
  |
  = help: common stop signals are SIGTERM, SIGINT, SIGQUIT and SIGHUP

error: could not load fleet.toml: 2 errors"#,
        );
    }

    #[test]
    fn env_file_with_a_bad_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("app.env"), "# ok\nA=1\nnot a pair\n")
            .expect("write app.env");
        let source = "[services.a]\ncommand = \"a\"\nenv_file = \"app.env\"\n";
        let err =
            super::super::parse(&dir.path().join("fleet.toml"), source).expect_err("bad env file");
        let messages: Vec<&str> = err
            .diagnostics()
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(messages, ["invalid line 3 in env_file `app.env`"]);
    }

    #[test]
    fn huge_durations_and_numbers_are_errors_not_overflows() {
        let source = r#"[project]
log_max_size = "99999999999GB"
log_keep = 4000000000
[services.a]
command = "x"
stop_timeout = "99999999999999s"
restart_window = "87601h"
"#;
        check(
            source,
            r#"
error: the size `99999999999GB` is too large
 --> fleet.toml:2:16
  |
2 | log_max_size = "99999999999GB"
  |                ^^^^^^^^^^^^^^^
  |
  = help: sizes go up to 16 EiB (2^64 bytes)

error: `log_keep` must be at most 1000
 --> fleet.toml:3:12
  |
3 | log_keep = 4000000000
  |            ^^^^^^^^^^

error: the duration `99999999999999s` is too long
 --> fleet.toml:6:16
  |
6 | stop_timeout = "99999999999999s"
  |                ^^^^^^^^^^^^^^^^^
  |
  = help: the longest duration is 87600h (10 years)

error: the duration `87601h` is too long
 --> fleet.toml:7:18
  |
7 | restart_window = "87601h"
  |                  ^^^^^^^^
  |
  = help: the longest duration is 87600h (10 years)

error: could not load fleet.toml: 4 errors"#,
        );
    }

    #[test]
    fn durations() {
        let ok = |text: &str| parse_duration(text).expect(text);
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.1s"), Duration::from_millis(100));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(parse_duration("10"), Err(DurationError::NoUnit));
        assert_eq!(parse_duration("1.5"), Err(DurationError::NoUnit));
        for bad in ["", "s", "10sec", "1m30", "-1s", "1.2.3s", "inf", "1 s"] {
            assert_eq!(parse_duration(bad), Err(DurationError::Invalid), "{bad:?}");
        }
        assert_eq!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::TooLong)
        );
    }

    #[test]
    fn durations_past_ten_years_are_too_long() {
        // Regression: `--wait-timeout 99999999999999s` parsed, then overflowed the
        // `Instant` it was added to and panicked.
        assert_eq!(ok_duration("87600h"), MAX_DURATION);
        assert_eq!(
            ok_duration("87599h59m59.999s"),
            MAX_DURATION - Duration::from_millis(1)
        );
        for long in ["87600h1ms", "87601h", "99999999999999s", "5256000m1s"] {
            assert_eq!(parse_duration(long), Err(DurationError::TooLong), "{long}");
        }
        assert_eq!(
            super::super::parse_duration("99999999999999s").map_err(|err| err.to_string()),
            Err("the longest duration is 87600h (10 years)".to_string())
        );
        assert_eq!(
            super::super::parse_duration("10").map_err(|err| err.to_string()),
            Err("expected a duration with a unit, like \"30s\" or \"2m\"".to_string())
        );
    }

    fn ok_duration(text: &str) -> Duration {
        parse_duration(text).expect(text)
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KB"), Ok(512_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1gb"), Ok(1_000_000_000));
        assert_eq!(parse_size("64 KiB"), Ok(65_536));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("10XB"), Err(SizeError::Invalid));
        assert_eq!(parse_size("MB"), Err(SizeError::Invalid));
        assert_eq!(parse_size("-1MB"), Err(SizeError::Invalid));
    }

    #[test]
    fn sizes_past_u64_are_too_large() {
        // Regression: "99999999999GB" overflowed the multiplication and was reported
        // as not a size at all.
        assert_eq!(parse_size("99999999999GB"), Err(SizeError::TooLarge));
        assert_eq!(parse_size("18446744073709551616"), Err(SizeError::TooLarge));
        assert_eq!(
            parse_size("99999999999999999999999999KB"),
            Err(SizeError::TooLarge)
        );
    }

    #[test]
    fn http_urls() {
        // host, port, request target, Host header
        let parsed = |url: &str| {
            parse_http_url(url).map(|target| {
                format!(
                    "{} {} {} {}",
                    target.host, target.port, target.path_and_query, target.host_header
                )
            })
        };
        assert_eq!(
            parsed("http://127.0.0.1:7001/health"),
            Ok("127.0.0.1 7001 /health 127.0.0.1:7001".into())
        );
        assert_eq!(
            parsed("http://localhost"),
            Ok("localhost 80 / localhost".into())
        );
        assert_eq!(
            parsed("http://localhost?ready=1#top"),
            Ok("localhost 80 /?ready=1 localhost".into())
        );
        assert_eq!(
            parsed("http://localhost:8080/a/b?x=1&y=%20#frag"),
            Ok("localhost 8080 /a/b?x=1&y=%20 localhost:8080".into())
        );
        assert_eq!(
            parsed("HTTP://Web.local:81"),
            Ok("Web.local 81 / Web.local:81".into())
        );
        assert_eq!(
            parsed("http://[::1]:8080/x"),
            Ok("::1 8080 /x [::1]:8080".into())
        );
        assert_eq!(parsed("http://[::1]"), Ok("::1 80 / [::1]".into()));
        assert_eq!(
            parsed("http://[0:0::1]:9/"),
            Ok("::1 9 / [::1]:9".into()),
            "IPv6 addresses are written the short way"
        );
        assert_eq!(parsed("https://localhost"), Err(HTTPS_UNSUPPORTED));
        assert_eq!(parsed("HTTPS://localhost"), Err(HTTPS_UNSUPPORTED));
        assert_eq!(parsed("localhost:80"), Err("it must start with http://"));
        assert_eq!(parsed("http://:80/"), Err("the host is missing"));
        assert_eq!(parsed("http:///health"), Err("the host is missing"));
        assert_eq!(parsed("http://"), Err("the host is missing"));
        let bad_port = Err("the port is not a number from 1 to 65535");
        assert_eq!(parsed("http://localhost:http/"), bad_port);
        assert_eq!(parsed("http://localhost:0/"), bad_port);
        assert_eq!(parsed("http://localhost:65536/"), bad_port);
        assert_eq!(parsed("http://localhost:/"), bad_port);
        assert_eq!(parsed("http://[::1]:99999/"), bad_port);
        assert_eq!(
            parsed("http://::1:8080/"),
            Err("an IPv6 address must be in brackets, like http://[::1]:8080/")
        );
        assert_eq!(parsed("http://[::1/"), Err("unclosed `[` in the host"));
        assert_eq!(
            parsed("http://[localhost]:80/"),
            Err("the host in brackets is not an IPv6 address")
        );
        assert_eq!(
            parsed("http://[::1]x/"),
            Err("unexpected text after the host")
        );
        assert_eq!(
            parsed("http://user:pw@localhost/"),
            Err("credentials are not supported")
        );
        assert_eq!(
            parsed("http://local host/"),
            Err("the host has a character a host name cannot have")
        );
        assert_eq!(
            parsed("http://localhost/a b"),
            Err("the path has a character that must be percent-encoded")
        );
    }

    #[test]
    fn port_mappings_and_volumes() {
        let mapping = |text: &str| {
            parse_port_mapping(text).map(|m| format!("{} {} {}", m.host_ip, m.host, m.container))
        };
        assert_eq!(mapping("6380:6379"), Some("127.0.0.1 6380 6379".into()));
        assert_eq!(mapping("0.0.0.0:80:8080"), Some("0.0.0.0 80 8080".into()));
        assert_eq!(mapping("[::1]:80:8080"), Some("::1 80 8080".into()));
        assert_eq!(mapping("localhost:80:8080"), None);
        assert_eq!(mapping("80"), None);
        let root = Path::new("/srv/app");
        assert_eq!(
            parse_volume("./data:/data", root),
            Some("/srv/app/data:/data".into())
        );
        assert_eq!(
            parse_volume("../shared:/s:ro", root),
            Some("/srv/shared:/s:ro".into())
        );
        assert_eq!(parse_volume("/abs:/x:rw", root), Some("/abs:/x".into()));
        assert_eq!(
            parse_volume("cache:/var/cache", root),
            Some("cache:/var/cache".into())
        );
        assert_eq!(parse_volume("cache:relative", root), None);
        assert_eq!(parse_volume("cache:/x:rx", root), None);
    }
}
