//! The JSON Schema (draft 2020-12) of `fleet.toml`, for editors: taplo and Even Better
//! TOML read it from a `#:schema` line and give completion, hover docs and squiggles.
//!
//! Owns the schema's text: every key with its description, type, allowed values or
//! pattern, and default. It mirrors what `validate`, `values` and `health` accept; it
//! must not be used to validate a manifest (the validator is the authority, with its
//! spans and messages). A schema cannot see everything the validator checks (a
//! dependency on an unknown service or on one whose profile is off, cycles, clashing
//! ports, a port range whose length is not the replica count, paths that must exist,
//! regexes and globs that must compile, durations over 10 years), so it may accept a
//! manifest the validator rejects, never the other way round.
//!
//! Kept in step by the tests below: every key the validator knows is in the schema and
//! every key in the schema is one the validator knows (compared with the validator's
//! own key lists), each `default` gives the same service as leaving the key out, the
//! demo, the examples and every README snippet pass, the invalid manifests here are
//! rejected by both, and (in `manifest::validated`, under `cfg(test)`) every manifest a
//! unit test gets through the validator passes the schema too. The integration tests'
//! harness does the same for every manifest it runs `fleet` on.

use serde_json::{json, Value};

/// The key of each shape in `$defs`, as the tests find the tables in the schema.
pub(super) const PROJECT_DEF: &str = "project";
pub(super) const SERVICE_DEF: &str = "service";
pub(super) const HEALTH_DEF: &str = "health";
pub(super) const BACKOFF_DEF: &str = "backoff";
pub(super) const IMAGE_BUILD_DEF: &str = "image_build";
pub(super) const DEPENDENCY_DEF: &str = "dependency_options";
pub(super) const EXPORT_DEF: &str = "export";

/// A number with an optional fraction, then a unit; pieces combine (`1m30s`).
const DURATION_PATTERN: &str = r"^\s*(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ms|h|m|s))+\s*$";
/// A duration with at least one piece whose number is not 0: pieces, then one with a
/// nonzero digit in its whole part or its fraction, then pieces. One pattern, not an
/// `allOf` of two: taplo's completion overflows its stack on that.
const NONZERO_DURATION_PATTERN: &str = r"^\s*(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ms|h|m|s))*(0*[1-9][0-9]*(\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*)(ms|h|m|s)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ms|h|m|s))*\s*$";
/// A port number from 1 to 65535, as Rust's `u16` parser reads it (a `+` and leading
/// zeros are fine).
const PORT_TEXT: &str =
    r"\+?0*(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";
/// An IPv4 address (no leading zeros, as Rust's parser wants) or a loose IPv6 one
/// (brackets optional, at least two colons).
const IP_TEXT: &str = r"((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}|\[?[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*\]?)";
/// A variable in a string value: `${...}` or `$NAME` (`$$` is a literal `$`, but a
/// pattern cannot count dollars cheaply, so that counts too: the schema stays looser).
const VARIABLE_PATTERN: &str = r"\$(\{|[A-Za-z_])";
/// Service names become file and container names (Docker's container-name rule).
const NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$";
/// `NAME.N` names replica N of service `NAME`, so no service name ends that way.
const REPLICA_SUFFIX: &str = r"\.[0-9]+$";
/// `execve` takes `NAME=value`: no `=`, no NUL, and fleet adds no whitespace.
const ENV_NAME_PATTERN: &str = r"^[^=\s\x00]+$";
/// Some text that is not only whitespace.
const NOT_BLANK: &str = r"\S";

/// The schema, as `fleet schema` prints it.
pub fn manifest_schema() -> Value {
    let mut schema = written_schema();
    inline_described_refs(&mut schema);
    allow_variables(&mut schema);
    schema
}

/// A string value may hold variables (`${PORT}`, `$HOST`; see `manifest::interpolate`),
/// replaced when the manifest loads; the editor sees the text as written. So a string
/// that must match a pattern or be one of a list may instead hold a variable. Keys are
/// never interpolated: `propertyNames` keep their patterns.
fn allow_variables(schema: &mut Value) {
    fn walk(value: &mut Value, is_key: bool) {
        match value {
            Value::Object(map) => {
                // Children first, so the `anyOf` made below is not walked again.
                for (key, child) in map.iter_mut() {
                    walk(child, key == "propertyNames" || (is_key && key == "not"));
                }
                if !is_key && let Some(Value::String(pattern)) = map.get("pattern") {
                    let pattern = format!("(?:{pattern})|{VARIABLE_PATTERN}");
                    map.insert("pattern".to_string(), Value::String(pattern));
                }
                if let Some(Value::Array(choices)) = map.get("enum")
                    && choices.iter().all(Value::is_string)
                    && !map.contains_key("anyOf")
                {
                    let choices = Value::Array(choices.clone());
                    map.remove("enum");
                    map.insert(
                        "anyOf".to_string(),
                        json!([
                            { "enum": choices },
                            { "type": "string", "pattern": VARIABLE_PATTERN }
                        ]),
                    );
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, is_key);
                }
            }
            _ => {}
        }
    }
    walk(schema, false);
}

/// Editors read a key's hover text from the key's own schema, but taplo, like draft 7,
/// ignores what stands beside a `$ref`: `{ "$ref": duration, "description": ... }`
/// would show the duration's text, not the key's. So a `$ref` with a description beside
/// it is replaced by a copy of what it refers to, the key's description first and the
/// shape's after it. Bare `$ref`s (tables, list items) stay.
fn inline_described_refs(schema: &mut Value) {
    let defs = schema["$defs"].clone();
    fn walk(value: &mut Value, defs: &Value) {
        match value {
            Value::Object(map) => {
                let target = map
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|reference| reference.strip_prefix("#/$defs/"))
                    .map(str::to_string);
                if let (Some(name), Some(Value::String(own))) = (target, map.get("description"))
                    && let Some(Value::Object(shape)) = defs.get(&name)
                {
                    let own = own.clone();
                    let mut inlined = shape.clone();
                    let description = match shape.get("description").and_then(Value::as_str) {
                        Some(general) => format!("{own}\n\n{general}"),
                        None => own,
                    };
                    for (key, sibling) in map.iter() {
                        if key != "$ref" {
                            inlined.insert(key.clone(), sibling.clone());
                        }
                    }
                    inlined.insert("description".to_string(), Value::String(description));
                    *map = inlined;
                }
                for child in map.values_mut() {
                    walk(child, defs);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, defs);
                }
            }
            _ => {}
        }
    }
    walk(schema, &defs);
}

/// The schema as written here, before [`inline_described_refs`].
fn written_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fleet.toml",
        "description": "The manifest of a fleet: every service of a local application, process or container, with how it starts, is probed, restarts and redeploys. `fleet check` validates it with exact errors; this schema gives editors completion and hover docs.",
        "type": "object",
        "additionalProperties": false,
        "required": ["services"],
        "properties": {
            "project": { "$ref": format!("#/$defs/{PROJECT_DEF}") },
            "services": {
                "description": "One table per service: `[services.NAME]`. Services start in dependency order, then in the order written.",
                "type": "object",
                "minProperties": 1,
                "propertyNames": {
                    "description": "A service name: letters, digits, `-`, `_` and `.`, starting with a letter or digit (it becomes file and container names), and not ending like a replica's name (`.2`).",
                    "pattern": NAME_PATTERN,
                    "not": { "pattern": REPLICA_SUFFIX }
                },
                "additionalProperties": { "$ref": format!("#/$defs/{SERVICE_DEF}") }
            }
        },
        "$defs": {
            PROJECT_DEF: project(),
            SERVICE_DEF: service(),
            HEALTH_DEF: health(),
            BACKOFF_DEF: backoff(),
            IMAGE_BUILD_DEF: image_build(),
            DEPENDENCY_DEF: dependency_options(),
            EXPORT_DEF: export(),
            "duration": {
                "description": "A duration with a unit: `ms`, `s`, `m` or `h`, combined and with decimals: \"250ms\", \"10s\", \"1m30s\", \"1.5s\"; at most 87600h (10 years).",
                "type": "string",
                "pattern": DURATION_PATTERN
            },
            "nonzero_duration": {
                "description": "A duration longer than 0, with a unit: `ms`, `s`, `m` or `h`, combined and with decimals: \"250ms\", \"10s\", \"1m30s\", \"1.5s\"; at most 87600h (10 years).",
                "type": "string",
                "pattern": NONZERO_DURATION_PATTERN
            },
            "count": { "type": "integer", "minimum": 0, "maximum": u32::MAX },
            "port": { "description": "A port number.", "type": "integer", "minimum": 1, "maximum": 65535 },
            "address": {
                "description": "A port (on 127.0.0.1) or \"HOST:PORT\", like 7001 or \"0.0.0.0:7001\".",
                "anyOf": [
                    { "$ref": "#/$defs/port" },
                    { "type": "string", "pattern": format!(r"^.+:{PORT_TEXT}$") }
                ]
            },
            "command_line": {
                "description": "A string runs through `/bin/sh -c` (plain words without shell syntax are exec'd directly); an array is exec'd as it is.",
                "anyOf": [
                    { "type": "string", "pattern": NOT_BLANK },
                    {
                        "type": "array",
                        "minItems": 1,
                        "prefixItems": [{ "type": "string", "pattern": NOT_BLANK }],
                        "items": { "type": "string" }
                    }
                ]
            },
            "globs": {
                "type": "array",
                "items": { "type": "string", "pattern": NOT_BLANK, "description": "A glob relative to the manifest's folder, like \"src/**/*.rs\"." }
            },
            "scalar": {
                "description": "A string, integer or boolean (written as text).",
                "type": ["string", "integer", "boolean"]
            },
            "condition": {
                "description": "`started`: its process runs; `healthy`: its probe passes (it needs a `health`); `completed`: a one-shot job that exited 0.",
                "enum": ["started", "healthy", "completed"]
            },
            "port_mapping": {
                "description": "A published port: \"HOST:CONTAINER\" or \"IP:HOST:CONTAINER\", like \"8080:80\" or \"127.0.0.1:8080:80\"; HOST may be a range with one port per replica, \"8080-8082:80\".",
                "type": "string",
                "pattern": format!(r"^\s*({IP_TEXT}:)?{PORT_TEXT}(-{PORT_TEXT})?:{PORT_TEXT}\s*$")
            },
            "signal": signal()
        }
    })
}

fn project() -> Value {
    json!({
        "description": "Settings of the whole project.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "name": {
                "description": "The project's name: Docker networks and images are named after it. Default: the name of the manifest's folder.",
                "type": "string",
                "pattern": NOT_BLANK
            },
            "log_max_size": {
                "description": "A service's log file (`.fleet/logs/NAME.log`) is rotated when it grows past this size: bytes, or \"512KB\", \"10MB\", \"1GB\" (powers of 1000), \"64KiB\" (powers of 1024).",
                "anyOf": [
                    { "type": "integer", "minimum": 1 },
                    { "type": "string", "pattern": r"^\s*0*[1-9][0-9]*\s*([bB]|[kKmMgG][iI]?[bB])?\s*$" }
                ],
                "default": "10MB"
            },
            "log_keep": {
                "description": "How many rotated log files are kept beside the live one.",
                "type": "integer",
                "minimum": 0,
                "maximum": 1000,
                "default": 3
            }
        }
    })
}

/// Every service key. What differs between processes and containers (`build`, `ports`,
/// the keys only one kind may have, `command` being required) is in the `if` below:
/// a service is a container when it has an `image` or a `build` table.
fn service() -> Value {
    let probes = ["http", "tcp", "exec", "log"];
    let one_probe: Vec<Value> = probes
        .iter()
        .map(|probe| json!({ "required": [probe] }))
        .chain([json!({ "required": ["docker"], "properties": { "docker": { "not": { "const": false } } } })])
        .collect();
    json!({
        "description": "A service: a process (`command`) or a container (`image` or a `build` table).",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "command": {
                "description": "Process: what runs (required). Container: overrides the image's command (a string is split into words, not run by a shell).",
                "$ref": "#/$defs/command_line"
            },
            "cwd": {
                "description": "Process only: the working directory, relative to the manifest's folder; it must exist. Default: the manifest's folder.",
                "type": "string"
            },
            "env": {
                "description": "Extra environment variables; values may be strings, integers or booleans. Wins over `env_file`.",
                "type": "object",
                "propertyNames": { "pattern": ENV_NAME_PATTERN },
                "additionalProperties": { "$ref": "#/$defs/scalar" },
                "default": {}
            },
            "env_file": {
                "description": "A file of `KEY=VALUE` lines (`#` comments, an `export ` prefix and quotes allowed), relative to the manifest's folder.",
                "type": "string"
            },
            "depends_on": {
                "description": "Services to wait for before this one starts. A list waits for each to be started; a table names the condition per service: `{ db = \"healthy\", migrate = \"completed\" }`, or `{ db = { condition = \"healthy\", restart = true } }`.",
                "anyOf": [
                    {
                        "type": "array",
                        "uniqueItems": true,
                        "items": { "type": "string", "description": "A service name." }
                    },
                    {
                        "type": "object",
                        "additionalProperties": {
                            "anyOf": [
                                { "$ref": "#/$defs/condition" },
                                { "$ref": format!("#/$defs/{DEPENDENCY_DEF}") }
                            ]
                        }
                    }
                ],
                "default": []
            },
            "restart": {
                "description": "When an exited instance is restarted: always, only after a failure (exit code not 0, or killed), or never.",
                "enum": ["always", "on-failure", "never"],
                "default": "on-failure"
            },
            "max_restarts": {
                "description": "Crashes allowed within `restart_window`; one more and the service is `failed` and stays down while the rest runs.",
                "$ref": "#/$defs/count",
                "default": 5
            },
            "restart_window": {
                "description": "The window `max_restarts` counts crashes in.",
                "$ref": "#/$defs/duration",
                "default": "60s"
            },
            "backoff": { "$ref": format!("#/$defs/{BACKOFF_DEF}") },
            "stop_signal": {
                "description": "Sent to the whole process group (or the container) to stop it; any case, with or without `SIG`.",
                "$ref": "#/$defs/signal",
                "default": "SIGTERM"
            },
            "stop_timeout": {
                "description": "How long a stopping instance gets before SIGKILL.",
                "$ref": "#/$defs/duration",
                "default": "10s"
            },
            "ports": {
                "description": "Ports checked free before each start; `PORT` is set to the first. Process: port numbers. Container: published ports, \"HOST:CONTAINER\" or \"IP:HOST:CONTAINER\" (on 127.0.0.1 unless an IP is given; HOST may be a range, \"8080-8082:80\", one port per replica), or a number for the same port on both sides. Replica N (from 0) gets each single host port plus N.",
                "type": "array",
                "items": {
                    "anyOf": [
                        { "$ref": "#/$defs/port" },
                        { "$ref": "#/$defs/port_mapping" }
                    ]
                },
                "default": []
            },
            "health": { "$ref": format!("#/$defs/{HEALTH_DEF}") },
            "notify": {
                "description": "Process only: readiness through the systemd notify protocol; fleet sets `NOTIFY_SOCKET` and takes `READY=1` as healthy. Replaces a `health` probe.",
                "type": "boolean",
                "default": false
            },
            "watchdog": {
                "description": "With `notify = true`: `WATCHDOG=1` must arrive at least this often, or the instance is unhealthy (`WATCHDOG_USEC` is set).",
                "$ref": "#/$defs/nonzero_duration"
            },
            "restart_on_unhealthy": {
                "description": "Restart an instance that was healthy and then fails `retries` probes in a row, through the restart policy and backoff.",
                "type": "boolean",
                "default": true
            },
            "start_timeout": {
                "description": "Needs a probe (`health` or `notify`). A new instance not healthy by then is stopped and restarted; without it a start may take as long as it needs.",
                "$ref": "#/$defs/nonzero_duration"
            },
            "build": {
                "description": "Process: a command run in `cwd` before each start and redeploy. Container: a table that builds the image (`context`, `dockerfile`, `args`).",
                "anyOf": [
                    { "$ref": "#/$defs/command_line" },
                    { "$ref": format!("#/$defs/{IMAGE_BUILD_DEF}") }
                ]
            },
            "watch": {
                "description": "Globs, relative to the manifest's folder; a change to a matching file redeploys the service.",
                "$ref": "#/$defs/globs",
                "default": []
            },
            "ignore": {
                "description": "Globs excluded from `watch`; `.git`, `target` and `.fleet` always are.",
                "$ref": "#/$defs/globs",
                "default": []
            },
            "redeploy": {
                "description": "`start-first`: the new instance starts beside the old one and replaces it once healthy; `stop-first`: the old one stops first. Default: `start-first` with a `socket`, else `stop-first`.",
                "enum": ["start-first", "stop-first"]
            },
            "socket": {
                "description": "Process only: a port (or \"HOST:PORT\") fleet binds and hands to every instance as fd 3 (`LISTEN_FDS=1`), so old and new instances accept on it during a redeploy.",
                "$ref": "#/$defs/address"
            },
            "image": {
                "description": "Container: the image to run (never pulled: it must exist, or be built by `build`). With `build`, the tag the built image gets. Default with `build`: `fleet-PROJECT/SERVICE:dev`.",
                "type": "string",
                "pattern": NOT_BLANK
            },
            "volumes": {
                "description": "Container only: \"HOST:CONTAINER\" bind mounts (a host path starting with `.` or `/`, relative to the manifest's folder) or \"NAME:CONTAINER\" named volumes, optionally with \":ro\" or \":rw\".",
                "type": "array",
                "items": {
                    "type": "string",
                    "pattern": r"^([./][^:]*|[A-Za-z0-9][A-Za-z0-9_.-]*):/[^:]*(:(ro|rw))?$"
                },
                "default": []
            },
            "init": {
                "description": "Container only: run the engine's init process as PID 1 (compose's `init`). It forwards the stop signal to the program and reaps zombies, so a program without a SIGTERM handler (busybox httpd, many shell scripts) stops at once instead of being killed at `stop_timeout`.",
                "type": "boolean",
                "default": false
            },
            "replicas": {
                "description": "How many instances of the service run, each with its own process group (or container), probe, restarts and log, named `NAME.1`, `NAME.2`, ... With `socket` they all accept on it; a port in `ports` (and a probe of it) moves up by one per replica. 0 keeps the service declared but not running.",
                "type": "integer",
                "minimum": 0,
                "maximum": super::MAX_REPLICAS,
                "default": 1
            },
            "profiles": {
                "description": "The profiles that enable this service: it starts only when one of them is active (`fleet up --profile NAME`, `FLEET_PROFILES`) or when it is named on the command line. A service without `profiles` always starts.",
                "type": "array",
                "minItems": 1,
                "items": { "type": "string", "pattern": NAME_PATTERN, "description": "A profile name: letters, digits, `-`, `_` and `.`, starting with a letter or digit." }
            },
            "export": { "$ref": format!("#/$defs/{EXPORT_DEF}") }
        },
        // One `if` at the top, the probe rule nested in its branches: taplo offers no
        // key completion at all for a table whose schema has an `allOf`.
        "if": {
            "anyOf": [
                { "required": ["image"] },
                { "required": ["build"], "properties": { "build": { "type": "object" } } }
            ]
        },
        "then": {
            "properties": {
                "cwd": false,
                "socket": false,
                "notify": { "const": false },
                "build": { "$ref": format!("#/$defs/{IMAGE_BUILD_DEF}") },
                "health": { "oneOf": one_probe }
            }
        },
        "else": {
            "required": ["command"],
            "properties": {
                "volumes": false,
                "init": false,
                "build": { "$ref": "#/$defs/command_line" },
                "ports": { "items": { "$ref": "#/$defs/port" } },
                "health": { "properties": { "docker": { "const": false } } }
            },
            "if": { "required": ["notify"], "properties": { "notify": { "const": true } } },
            "then": { "properties": { "health": { "not": { "anyOf": one_probe } } } },
            "else": { "properties": { "health": { "oneOf": one_probe } } }
        },
        "dependentSchemas": {
            "watchdog": { "required": ["notify"], "properties": { "notify": { "const": true } } },
            "start_timeout": {
                "anyOf": [
                    { "required": ["health"] },
                    { "required": ["notify"], "properties": { "notify": { "const": true } } }
                ]
            }
        }
    })
}

fn health() -> Value {
    json!({
        "description": "The service's probe: exactly one of `http`, `tcp`, `exec`, `log` and `docker` (none with `notify = true`), and how often and patiently it runs. A new instance is starting until its probe first passes; after that, `retries` failures in a row make it unhealthy.",
        "type": "object",
        "additionalProperties": false,
        "dependentRequired": { "expect_body": ["http"] },
        "properties": {
            "http": {
                "description": "GET this http:// URL; a 2xx answer passes (redirects are not followed). https is not supported.",
                "type": "string",
                "pattern": r"^[Hh][Tt][Tt][Pp]://[^\s/?#@]+([/?][^\s#]*)?(#.*)?$"
            },
            "expect_body": {
                "description": "With `http`: the body must contain this text (searched in its first 64 KiB).",
                "type": "string"
            },
            "tcp": {
                "description": "A TCP connect to this port (or \"HOST:PORT\") succeeds. A container's published port is probed at the container's own address.",
                "$ref": "#/$defs/address"
            },
            "exec": {
                "description": "This command exits 0 (run in the service's folder and environment; killed at `timeout`).",
                "$ref": "#/$defs/command_line"
            },
            "log": {
                "description": "A regex a line of the service's output matches; readiness only.",
                "type": "string",
                "format": "regex"
            },
            "docker": {
                "description": "Container only: the engine's health check, as the engine reports it. `true`: the image's own HEALTHCHECK. A command replaces it, run inside the container with this table's interval, timeout, retries and start_period: a string (the container's `/bin/sh -c`), an array exec'd directly, or the engine's `[\"CMD\", ...]` / `[\"CMD-SHELL\", \"script\"]`. `false` is the same as leaving it out.",
                "anyOf": [
                    { "type": "boolean" },
                    { "$ref": "#/$defs/command_line" }
                ]
            },
            "interval": {
                "description": "Time between probes of a healthy instance (a starting one is probed faster).",
                "$ref": "#/$defs/nonzero_duration",
                "default": "1s"
            },
            "timeout": {
                "description": "How long one probe may take, all of it (connect, request, answer).",
                "$ref": "#/$defs/nonzero_duration",
                "default": "1s"
            },
            "retries": {
                "description": "Failures in a row that make a healthy instance unhealthy.",
                "type": "integer",
                "minimum": 1,
                "maximum": u32::MAX,
                "default": 3
            },
            "start_period": {
                "description": "Failures during this time after a start never count, even after a first pass.",
                "$ref": "#/$defs/duration",
                "default": "0s"
            }
        }
    })
}

fn backoff() -> Value {
    json!({
        "description": "The restart delay: `initial` after a crash, doubling per crash in a row up to `max`, reset after 10 s of stable uptime.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "initial": {
                "description": "The first restart delay; \"0s\" restarts at once.",
                "$ref": "#/$defs/duration",
                "default": "100ms"
            },
            "max": {
                "description": "The longest restart delay; not shorter than `initial`.",
                "$ref": "#/$defs/duration",
                "default": "30s"
            }
        },
        "default": { "initial": "100ms", "max": "30s" }
    })
}

fn image_build() -> Value {
    json!({
        "description": "Container: build the image locally (fleet never pulls from a registry).",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "context": {
                "description": "The build context, relative to the manifest's folder; it must exist.",
                "type": "string",
                "default": "."
            },
            "dockerfile": {
                "description": "The Dockerfile, relative to the context.",
                "type": "string",
                "default": "Dockerfile"
            },
            "args": {
                "description": "Build arguments (`ARG` in the Dockerfile); values may be strings, integers or booleans.",
                "type": "object",
                "additionalProperties": { "$ref": "#/$defs/scalar" },
                "default": {}
            }
        }
    })
}

/// `[services.X.export]`: how `fleet export` runs the service on Docker Swarm or
/// Kubernetes.
fn export() -> Value {
    json!({
        "description": "How `fleet export swarm|kubernetes` runs this service there; `fleet up` ignores it. A process service is exported only with an `image`.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "image": {
                "description": "The image the engine runs (a process service's program must be in it); for a container, replaces its local tag.",
                "type": "string",
                "pattern": NOT_BLANK
            },
            "command": {
                "description": "The command in that image, when it differs from `command`.",
                "$ref": "#/$defs/command_line"
            },
            "env": {
                "description": "Variables added over `env` there.",
                "type": "object",
                "propertyNames": { "pattern": ENV_NAME_PATTERN },
                "additionalProperties": { "$ref": "#/$defs/scalar" }
            },
            "secret": {
                "description": "The `env_file` holds secrets: Kubernetes gets a Secret instead of a ConfigMap. Needs `env_file`.",
                "type": "boolean"
            }
        }
    })
}

fn dependency_options() -> Value {
    json!({
        "description": "How to depend on one service.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "condition": { "$ref": "#/$defs/condition", "default": "started" },
            "restart": {
                "description": "Restart this service when the dependency is back after it restarted.",
                "type": "boolean",
                "default": false
            }
        }
    })
}

/// The stop signals Linux knows, by name, as `values::signal` reads them: any case,
/// `SIG` optional, spaces around allowed.
fn signal() -> Value {
    let names: Vec<&str> = nix::sys::signal::Signal::iterator()
        .map(|signal| signal.as_str())
        .collect();
    let any_case = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let bare: Vec<String> = names
        .iter()
        .map(|name| any_case(name.trim_start_matches("SIG")))
        .collect();
    json!({
        "description": "A signal name: SIGTERM, SIGINT, SIGQUIT, SIGHUP, ...",
        "type": "string",
        "pattern": format!(r"^\s*({})?({})\s*$", any_case("SIG"), bare.join("|")),
        "examples": names
    })
}

/// The schema as `fleet schema` prints it: pretty, with a final newline.
pub fn manifest_schema_text() -> String {
    format!("{:#}\n", manifest_schema())
}

#[cfg(test)]
pub(super) mod tests;
