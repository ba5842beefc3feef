//! The fuzz targets' bodies: each takes arbitrary bytes, feeds them to one of fleet's
//! parsers and panics when an invariant breaks. `fuzz/` (cargo-fuzz, nightly) calls
//! them from libFuzzer; `tests/integration/fuzz_corpus.rs` replays every checked-in
//! corpus file and crash artifact through the same functions on stable, so a
//! regression fails `cargo test`.
//!
//! Hidden from the docs and not part of the API: it exists so the fuzz crate can reach
//! parsers that are `pub(crate)`. Nothing in fleet calls it; it calls down into
//! `manifest`, `protocol`, `import` and `watch` and must never start anything, open a
//! socket or write anywhere but its own scratch folder (`scratch_root`).
//!
//! # What each target holds to
//! - [`manifest`]: TOML text either loads, and then `fleet config`'s rendering loads
//!   back to an equal manifest, or fails with diagnostics whose spans lie inside the
//!   text (on char boundaries), and the diagnostics render.
//! - [`protocol`]: the server's framing gives the same frames however the stream is
//!   split into reads, never holds more than the limit, never yields a line longer than
//!   the limit; every line decodes to a request that survives encoding, or to an error
//!   reply that encodes.
//! - [`values`] dispatches on its first byte to one small parser (durations, sizes,
//!   signals, port mappings, `HOST:PORT`, volumes, `env_file` lines, `http://` URLs);
//!   each value it accepts is written back and read again to the same value.
//! - [`globs`]: every `watch` or `ignore` glob the manifest accepts compiles in the
//!   watcher.
//! - [`interpolate`]: ranges lie inside the text, and escaping then interpolating
//!   gives the text back.
//! - [`compose`] and [`procfile`]: `fleet import` either gives a manifest that is
//!   valid TOML (whose own diagnostics, if any, lie inside it) with warnings inside the
//!   source, or errors inside the source.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::import::{self, Context, Format};
use crate::manifest::interpolate::{self as interpolation, Interpolated, Variables};
use crate::manifest::render::{self, TomlValue};
use crate::manifest::values as parsers;
use crate::manifest::{self, ManifestError};
use crate::protocol::{self, Frame, Reply, RequestFramer, RequestLine, PROTOCOL_VERSION};
use crate::watch::{self, WatchSpec};

/// A target's body: arbitrary bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by the name of its folder under `fuzz/corpus/` and of its binary.
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("protocol", protocol),
    ("values", values),
    ("globs", globs),
    ("interpolate", interpolate),
    ("compose", compose),
    ("procfile", procfile),
];

/// The variables every target interpolates with (never the process environment, so a
/// run depends on its input only).
fn variables() -> &'static Variables {
    static VARIABLES: OnceLock<Variables> = OnceLock::new();
    VARIABLES.get_or_init(|| {
        Variables::from_pairs([
            ("NAME", "web"),
            ("EMPTY", ""),
            ("PORT", "8080"),
            ("DOLLAR", "a $b ${c}"),
            ("DB_PASSWORD", "s3cret$"),
            ("TAG", "1.4"),
        ])
    })
}

/// The folder the fuzzed manifests and imports sit in: a build context, env files and
/// a data folder, so that relative paths in the input can resolve. Made once per
/// process, under the temp dir; files are written whole and renamed into place, so
/// targets running at once never see half of one.
fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join("fleet-fuzz");
        let files: [(&str, &str); 4] = [
            ("img/Dockerfile", "FROM scratch\n"),
            (
                "app.env",
                "FROM_FILE=\"a $b\"\nexport OTHER='2'\n# comment\n",
            ),
            (".env", "FROM_DOTENV=1\n"),
            ("data/.keep", ""),
        ];
        for (name, text) in files {
            let path = root.join(name);
            if std::fs::read_to_string(&path).is_ok_and(|found| found == text) {
                continue;
            }
            // Best effort: without the files, relative paths fail to resolve, which is
            // input the targets handle too.
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let partial = root.join(format!(
                ".{}.{}",
                std::process::id(),
                name.replace('/', "_")
            ));
            if std::fs::write(&partial, text).is_ok() {
                let _ = std::fs::rename(&partial, &path);
            }
        }
        root
    })
}

/// The diagnostics of a manifest or an import point inside `source`, and render.
fn check_diagnostics(source: &str, err: &ManifestError) {
    let ManifestError::Invalid {
        source: kept,
        diagnostics,
        ..
    } = err
    else {
        panic!("parsing text gave an error that is not about the text: {err:?}");
    };
    assert_eq!(
        kept, source,
        "the error keeps another text than the one parsed"
    );
    assert!(
        !diagnostics.is_empty(),
        "an invalid manifest without a diagnostic"
    );
    for diagnostic in diagnostics {
        let span = &diagnostic.span;
        assert!(
            span.start <= span.end
                && span.end <= source.len()
                && source.is_char_boundary(span.start)
                && source.is_char_boundary(span.end),
            "diagnostic `{}` at {span:?} is outside the text ({} bytes) or splits a char",
            diagnostic.message,
            source.len()
        );
    }
    let _ = err.render(false);
    let _ = err.render(true);
}

/// `fleet.toml` text: load, render as `fleet config` does, load again.
pub fn manifest(data: &[u8]) {
    // A manifest that is not UTF-8 is refused before it is parsed.
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let path = scratch_root().join(manifest::MANIFEST_FILE);
    match manifest::parse_with_variables(&path, source, variables()) {
        Ok(first) => {
            let rendered = render::to_toml(&first);
            match manifest::parse_with_variables(&path, &rendered, variables()) {
                Ok(second) => assert_eq!(
                    first, second,
                    "`fleet config` output loads as another manifest:\n{rendered}"
                ),
                Err(err) => panic!(
                    "`fleet config` output does not load:\n{rendered}\n{}",
                    err.render(false)
                ),
            }
        }
        Err(err) => check_diagnostics(source, &err),
    }
}

/// Control socket bytes. The first byte sets the framer's limit (1 to 256 bytes, so
/// that short inputs reach it), the second seeds the sizes of the reads; the rest is
/// the stream.
pub fn protocol(data: &[u8]) {
    let [limit, seed, stream @ ..] = data else {
        return;
    };
    let limit = 1 + usize::from(*limit);
    let whole = RequestFramer::new(limit).push(stream);

    let mut framer = RequestFramer::new(limit);
    let mut chunked = Vec::new();
    let mut state = u32::from(*seed) | 1;
    let mut at = 0;
    while at < stream.len() {
        // xorshift: reads from 1 to 64 bytes, smaller and larger than the limit.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let end = stream.len().min(at + 1 + (state % 64) as usize);
        chunked.extend(framer.push(&stream[at..end]));
        assert!(
            framer.buffered() <= limit,
            "the framer holds {} bytes, over its limit of {limit}",
            framer.buffered()
        );
        at = end;
    }
    assert_eq!(
        whole, chunked,
        "the frames depend on how the stream was split into reads"
    );
    for frame in &whole {
        if let Frame::Line(line) = frame {
            assert!(
                line.len() <= limit,
                "a {}-byte line passed a limit of {limit}",
                line.len()
            );
            assert!(!line.contains(&b'\n'), "a line holds a newline");
            assert!(
                !line.iter().all(u8::is_ascii_whitespace),
                "a blank line was served"
            );
            decode(line);
        }
    }
    decode(stream);
}

/// A request line decodes to a request that encodes and decodes to itself, or to an
/// error that encodes as a reply.
fn decode(line: &[u8]) {
    match protocol::parse_request(line) {
        Ok(request) => {
            let wire = RequestLine {
                version: PROTOCOL_VERSION,
                request: request.clone(),
            };
            let encoded = match protocol::encode_line(&wire) {
                Ok(encoded) => encoded,
                Err(err) => panic!("a decoded request does not encode: {err}: {request:?}"),
            };
            let again = protocol::parse_request(&encoded[..encoded.len() - 1]);
            assert_eq!(again, Ok(request), "a request changed through encoding");
        }
        Err(body) => {
            if let Err(err) = protocol::encode_line(&Reply::Error(body)) {
                panic!("an error reply does not encode: {err}");
            }
        }
    }
}

/// One small parser, chosen by the first byte (modulo the number of parsers); the rest
/// is its text.
pub fn values(data: &[u8]) {
    const PARSERS: [fn(&str); 8] = [
        duration,
        size,
        signal,
        port_mapping,
        host_port,
        volume,
        env_file,
        http_url,
    ];
    let Some((which, text)) = data.split_first() else {
        return;
    };
    // Every value comes from a TOML string or a file read as UTF-8.
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    PARSERS[usize::from(*which) % PARSERS.len()](text);
}

fn duration(text: &str) {
    let Ok(duration) = manifest::parse_duration(text) else {
        return;
    };
    assert!(
        duration <= manifest::MAX_DURATION,
        "{text:?} is over the maximum"
    );
    let written = render::format_duration(duration);
    assert_eq!(
        manifest::parse_duration(&written),
        Ok(duration),
        "{text:?} is written {written:?}"
    );
}

fn size(text: &str) {
    let Ok(size) = parsers::parse_size(text) else {
        return;
    };
    assert_eq!(parsers::parse_size(&size.to_string()), Ok(size), "{text:?}");
}

fn signal(text: &str) {
    let Ok(signal) = parsers::parse_signal(text) else {
        return;
    };
    assert!(signal.number > 0, "{text:?}");
    assert_eq!(parsers::parse_signal(signal.name), Ok(signal), "{text:?}");
}

fn port_mapping(text: &str) {
    let Some(mapping) = parsers::parse_port_mapping(text) else {
        return;
    };
    assert!(mapping.host > 0 && mapping.container > 0, "{text:?}");
    assert!(
        mapping.host_last.is_none_or(|last| last >= mapping.host),
        "{text:?} is a backwards range"
    );
    let written = render::port_mapping_text(&mapping);
    assert_eq!(
        parsers::parse_port_mapping(&written),
        Some(mapping),
        "{text:?} is written {written:?}"
    );
}

fn host_port(text: &str) {
    let Some((host, port)) = parsers::parse_host_port(text) else {
        return;
    };
    assert!(port > 0 && !host.is_empty(), "{text:?}");
    // As `fleet config` writes a `socket`.
    let written = format!("{host}:{port}");
    assert_eq!(
        parsers::parse_host_port(&written),
        Some((host, port)),
        "{text:?} is written {written:?}"
    );
}

fn volume(text: &str) {
    let root = scratch_root();
    let Some(volume) = parsers::parse_volume(text, root) else {
        return;
    };
    assert_eq!(
        parsers::parse_volume(&volume, root).as_ref(),
        Some(&volume),
        "{text:?} is written {volume:?}"
    );
}

/// `watch` and `ignore` globs, one a line, the `ignore` ones after a `--` line; the
/// last line is also a changed path to match. Every glob the manifest accepts must
/// compile in the watcher, or `fleet up` would fail on a manifest `fleet check`
/// passed. A target of its own: compiling the watcher's glob sets takes milliseconds,
/// a hundred times what the other small parsers take.
pub fn globs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (watch_text, ignore_text) = text.split_once("\n--\n").unwrap_or((text, ""));
    let accepted = |lines: &str| -> Vec<String> {
        lines
            .lines()
            .filter(|pattern| parsers::glob_problem(pattern).is_none())
            .map(str::to_string)
            .collect()
    };
    let spec = WatchSpec {
        service: "svc".to_string(),
        watch: accepted(watch_text),
        ignore: accepted(ignore_text),
    };
    let changed = text.lines().last().unwrap_or_default();
    if let Err(err) = watch::would_redeploy(scratch_root(), &spec, Path::new(changed)) {
        panic!("the manifest accepts globs the watcher refuses: {err}: {spec:?}");
    }
}

fn env_file(text: &str) {
    let lines = text.lines().count();
    for entry in parsers::env_file_entries(text) {
        match entry {
            Ok((key, value)) => {
                assert!(parsers::is_valid_env_name(&key), "{key:?} from {text:?}");
                // `fleet config` writes the values into `env`: TOML must give them back.
                let written = format!(
                    "{} = {}",
                    render::toml_key(&key),
                    TomlValue::Template(value.clone()).to_text()
                );
                let table: toml::Table = match toml::from_str(&written) {
                    Ok(table) => table,
                    Err(err) => panic!("{written:?} is not TOML: {err}"),
                };
                assert_eq!(
                    table.get(&key).and_then(toml::Value::as_str),
                    Some(value.as_str()),
                    "{written:?}"
                );
            }
            Err(line) => assert!((1..=lines).contains(&line), "line {line} of {lines}"),
        }
    }
}

fn http_url(text: &str) {
    let Ok(target) = parsers::parse_http_url(text) else {
        return;
    };
    assert!(target.port > 0, "{text:?}");
    // Replicas probe the same URL on their own port.
    for port in [target.port, 1, 80, 65535] {
        let moved = target.with_port(port);
        assert_eq!(
            parsers::parse_http_url(&moved.url).as_ref(),
            Ok(&moved),
            "{text:?} on port {port}"
        );
    }
}

/// `${VAR}` expressions in arbitrary text.
pub fn interpolate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let inside = |range: &std::ops::Range<usize>| {
        range.start <= range.end
            && range.end <= text.len()
            && text.is_char_boundary(range.start)
            && text.is_char_boundary(range.end)
    };
    match interpolation::interpolate(text, variables()) {
        Ok(done) => {
            for (name, range) in &done.unset {
                assert!(inside(range), "{name} at {range:?} in {text:?}");
                assert!(
                    text[range.clone()].starts_with('$'),
                    "{range:?} in {text:?}"
                );
                assert!(variables().get(name).is_none(), "{name} is set");
            }
            if !text.contains('$') {
                assert_eq!(done.text, text);
            }
        }
        Err(err) => assert!(inside(&err.range), "{:?} in {text:?}", err.range),
    }
    assert_eq!(
        interpolation::interpolate(&interpolation::escape(text), variables()),
        Ok(Interpolated {
            text: text.to_string(),
            unset: Vec::new(),
        }),
        "escaping does not give {text:?} back"
    );
}

/// A docker compose file through `fleet import`.
pub fn compose(data: &[u8]) {
    import_as(Format::Compose, "compose.yaml", data);
}

/// A Procfile through `fleet import`.
pub fn procfile(data: &[u8]) {
    import_as(Format::Procfile, "Procfile", data);
}

fn import_as(format: Format, file: &str, data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let root = scratch_root();
    let context = Context {
        path: Path::new(file),
        source_dir: root,
        out_dir: root,
        variables: variables(),
    };
    let imported = match import::import(format, source, &context) {
        Ok(imported) => imported,
        Err(err) => return check_diagnostics(source, &err),
    };
    for warning in &imported.warnings {
        let span = &warning.span;
        assert!(
            span.start <= span.end && span.end <= source.len(),
            "warning `{}` at {span:?} is outside the source ({} bytes)",
            warning.message,
            source.len()
        );
    }
    let _ = imported.render_warnings(Path::new(file), source);
    if let Err(err) = toml::from_str::<toml::Table>(&imported.manifest) {
        panic!(
            "`fleet import` wrote a manifest that is not TOML: {err}\n{}",
            imported.manifest
        );
    }
    let path = root.join(manifest::MANIFEST_FILE);
    if let Err(err) = manifest::parse_with_variables(&path, &imported.manifest, variables()) {
        check_diagnostics(&imported.manifest, &err);
    }
}
