//! The schema against the validator: same keys, same defaults, and the same verdict on
//! the demo, the examples, the README's snippets and the manifests below.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use super::{
    manifest_schema, BACKOFF_DEF, DEPENDENCY_DEF, EXPORT_DEF, HEALTH_DEF, IMAGE_BUILD_DEF,
    PROJECT_DEF, SERVICE_DEF,
};
use crate::manifest::{health, validate};

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(&manifest_schema()).expect("the schema compiles")
    })
}

/// What the schema says is wrong with `source`, one line per problem.
pub(crate) fn schema_errors(source: &str) -> Vec<String> {
    let table: toml::Table = match toml::from_str(source) {
        Ok(table) => table,
        Err(err) => return vec![format!("not TOML: {err}")],
    };
    let instance = serde_json::to_value(table).expect("TOML values convert to JSON");
    validator()
        .iter_errors(&instance)
        .map(|error| format!("at `{}`: {error}", error.instance_path()))
        .collect()
}

/// Called by `manifest::parse` in unit tests for every manifest the validator accepts.
#[track_caller]
pub(crate) fn assert_schema_accepts(path: &Path, source: &str) {
    let errors = schema_errors(source);
    assert!(
        errors.is_empty(),
        "the validator accepts {} but the schema rejects it:\n{}\n--- the manifest ---\n{source}",
        path.display(),
        errors.join("\n")
    );
}

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn def(name: &str) -> Value {
    manifest_schema()["$defs"][name].clone()
}

fn keys(table: &Value) -> BTreeSet<String> {
    table["properties"]
        .as_object()
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = manifest_schema();
    if let Err(err) = jsonschema::meta::validate(&schema) {
        panic!("not a valid JSON Schema: {err}");
    }
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    validator();
}

#[test]
fn every_key_the_validator_knows_is_in_the_schema_and_back() {
    let schema = manifest_schema();
    let tables: [(&str, Value, &[&str]); 8] = [
        ("the top level", schema.clone(), validate::TOP_LEVEL_KEYS),
        ("`[project]`", def(PROJECT_DEF), validate::PROJECT_KEYS),
        ("a service", def(SERVICE_DEF), validate::SERVICE_KEYS),
        ("`health`", def(HEALTH_DEF), health::HEALTH_KEYS),
        ("`backoff`", def(BACKOFF_DEF), validate::BACKOFF_KEYS),
        (
            "a container's `build`",
            def(IMAGE_BUILD_DEF),
            validate::BUILD_KEYS,
        ),
        (
            "a dependency's options",
            def(DEPENDENCY_DEF),
            validate::DEPENDENCY_KEYS,
        ),
        ("`export`", def(EXPORT_DEF), validate::EXPORT_KEYS),
    ];
    let mut problems = Vec::new();
    for (table, schema_table, known) in tables {
        let in_schema = keys(&schema_table);
        let in_validator: BTreeSet<String> = known.iter().map(|key| key.to_string()).collect();
        for key in in_validator.difference(&in_schema) {
            problems.push(format!(
                "{table}: `{key}` is known to the validator, not to the schema"
            ));
        }
        for key in in_schema.difference(&in_validator) {
            problems.push(format!(
                "{table}: `{key}` is in the schema, unknown to the validator"
            ));
        }
        assert_eq!(
            schema_table["additionalProperties"],
            Value::Bool(false),
            "{table} must reject unknown keys, as the validator does"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every table in the schema says what it does with keys it does not list: either
/// none are allowed or each is checked (env, build args, dependencies by name).
#[test]
fn every_object_in_the_schema_says_what_other_keys_may_be() {
    fn walk(schema: &Value, path: &str, problems: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                if map.get("type") == Some(&Value::from("object"))
                    && !map.contains_key("additionalProperties")
                {
                    problems.push(path.to_string());
                }
                for (key, value) in map {
                    // A condition only asks what type a value has.
                    if key != "if" {
                        walk(value, &format!("{path}/{key}"), problems);
                    }
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}/{index}"), problems);
                }
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    walk(&manifest_schema(), "#", &mut problems);
    assert!(
        problems.is_empty(),
        "objects without additionalProperties: {problems:?}"
    );
}

/// A project folder with what the manifests below point at.
fn project_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for folder in ["data", "cache", "src"] {
        std::fs::create_dir_all(dir.path().join(folder)).expect("mkdir");
    }
    std::fs::write(dir.path().join(".env"), "TOKEN=secret\n").expect("write .env");
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write Dockerfile");
    std::fs::write(dir.path().join("cache/Dockerfile"), "FROM scratch\n")
        .expect("write Dockerfile");
    std::fs::write(dir.path().join("cache/Containerfile"), "FROM scratch\n")
        .expect("write Containerfile");
    dir
}

fn validator_verdict(dir: &Path, source: &str) -> Result<crate::manifest::Manifest, String> {
    crate::manifest::parse(&dir.join("fleet.toml"), source).map_err(|err| err.render(false))
}

/// Each form of each key, as the README and the validator's tests write them.
const VALID: &[&str] = &[
    r#"
[project]
name = "forms"
log_max_size = "512KB"
log_keep = 0

[services.db]
command = ["db", "--port", "5432"]
cwd = "data"
env = { A = "x", N = 4, B = true }
env_file = ".env"
restart = "always"
max_restarts = 0
restart_window = "1m30s"
backoff = { initial = "0s", max = "1.5s" }
stop_signal = "int"
stop_timeout = "250ms"
ports = [5432, 5433]
health = { tcp = "127.0.0.1:5432", interval = "2s", timeout = "500ms", retries = 1, start_period = "10s" }
restart_on_unhealthy = false
start_timeout = "2m"
build = "make db"
watch = ["src/**/*.rs", "Cargo.toml"]
ignore = ["**/*.tmp"]
redeploy = "stop-first"
"#,
    r#"
[project]
log_max_size = 4096

[services.api]
command = "./api"
socket = 7003
notify = true
watchdog = "5s"
start_timeout = "30s"
stop_signal = " sigHup "
build = ["cargo", "build"]
depends_on = ["db", "cache"]
[services.db]
command = "db"
health = { http = "http://[::1]:8080/health?deep=1", expect_body = "ok" }
[services.cache]
command = "cache"
socket = "0.0.0.0:7004"
redeploy = "start-first"
health = { exec = ["redis-cli", "ping"], docker = false }
"#,
    r#"
[project]
log_max_size = "1 GiB"

[services.web]
command = "web"
depends_on = { db = "healthy", migrate = "completed", cache = "started", queue = { condition = "healthy", restart = true }, mail = {} }
[services.db]
command = "db"
health = { log = "ready to accept connections" }
[services.migrate]
command = "migrate"
restart = "never"
[services.cache]
command = "cache"
[services.queue]
command = "queue"
notify = true
[services.queue.health]
interval = "3s"
[services.mail]
command = "mail"
health = { tcp = 1025 }
"#,
    r#"
[services.cache]
image = "fleet-demo/cache:dev"
build = { context = "cache", dockerfile = "Containerfile", args = { PROFILE = "dev", LEVEL = 2, DEBUG = false } }
ports = [6379, "8080:80", "0.0.0.0:8081:80", "[::1]:8082:80", "::1:8083:80", " 8084:80 "]
volumes = ["./data:/data", "/srv/x:/x:rw", "cachedata:/var/cache:ro", "..:/up"]
init = true
command = "/cache --port 6380"
notify = false
env = { PORT = "6380" }
health = { docker = true, retries = 10 }
stop_signal = "SIGQUIT"
[services.built]
build = {}
[services.image-only]
image = "postgres:16"
command = ["/migrate"]
health = { tcp = "db:5432" }
"#,
    r#"
[services.a]
command = "a"
[services.a.backoff]
initial = "1m"
max = "1h"
[services.a.health]
http = "HTTP://localhost/"
timeout = "1.5s"
[services.a.env]
"dotted.name" = "x"
"#,
    r#"
[services.web]
command = "web"
replicas = 3
socket = 8080
profiles = ["full", "debug"]
[services.worker]
command = "worker"
replicas = 0
ports = [9000]
health = { tcp = 9000 }
[services.cache]
image = "redis:7"
replicas = 3
ports = ["6380-6382:6379", "127.0.0.1:7000-7002:80", 6390]
profiles = ["full"]
[services."api.v2"]
command = "api"
"#,
    r#"
[services.web]
command = "web --port ${FLEET_SCHEMA_TEST_PORT:-8080} $$HOME"
ports = [8080]
stop_timeout = "${FLEET_SCHEMA_TEST_STOP:-10s}"
restart = "${FLEET_SCHEMA_TEST_RESTART:-always}"
stop_signal = "${FLEET_SCHEMA_TEST_SIGNAL:-SIGINT}"
health = { http = "http://127.0.0.1:${FLEET_SCHEMA_TEST_PORT:-8080}/health", interval = "${FLEET_SCHEMA_TEST_INTERVAL:-2s}" }
[services.db]
image = "postgres:${FLEET_SCHEMA_TEST_PG:-16}"
ports = ["${FLEET_SCHEMA_TEST_DB_PORT:-5432}:5432"]
volumes = ["${FLEET_SCHEMA_TEST_DATA:-./data}:/data"]
health = { docker = ["CMD-SHELL", "pg_isready -U app"], retries = 5 }
[services.cache]
image = "redis:7"
health = { docker = "redis-cli ping" }
"#,
];

#[test]
fn every_form_of_every_key_passes_both() {
    let dir = project_folder();
    for source in VALID {
        if let Err(rendered) = validator_verdict(dir.path(), source) {
            panic!("the validator rejects:\n{source}\n{rendered}");
        }
        let errors = schema_errors(source);
        assert!(
            errors.is_empty(),
            "the schema rejects:\n{source}\n{}",
            errors.join("\n")
        );
    }
}

/// Mistakes both catch; the comment says what the schema catches it with.
const INVALID: &[&str] = &[
    // additionalProperties at the top
    "[servics.a]\ncommand = \"a\"\n",
    // no services
    "[project]\nname = \"x\"\n",
    "services = {}\n",
    // additionalProperties in a service, health, backoff, build, a dependency
    "[services.a]\ncomand = \"a\"\n",
    "[services.a]\ncommand = \"a\"\nhealth = { tcp = 1, intervl = \"1s\" }\n",
    "[services.a]\ncommand = \"a\"\nbackoff = { first = \"1s\" }\n",
    "[services.a]\nbuild = { context = \".\", file = \"x\" }\n",
    "[services.a]\ncommand = \"a\"\ndepends_on = { b = { condition = \"started\", retry = true } }\n[services.b]\ncommand = \"b\"\n",
    // [project]
    "[project]\nname = \" \"\n[services.a]\ncommand = \"a\"\n",
    "[project]\nlog_keep = 1001\n[services.a]\ncommand = \"a\"\n",
    "[project]\nlog_max_size = 0\n[services.a]\ncommand = \"a\"\n",
    "[project]\nlog_max_size = \"10XB\"\n[services.a]\ncommand = \"a\"\n",
    // names
    "[services.\"my api\"]\ncommand = \"a\"\n",
    "[services.a]\ncommand = \"a\"\nenv = { \"A=B\" = \"x\" }\n",
    // a process needs a command; an empty one is none
    "[services.a]\ncwd = \".\"\n",
    "[services.a]\ncommand = \"  \"\n",
    "[services.a]\ncommand = []\n",
    "[services.a]\ncommand = [\"\", \"x\"]\n",
    "[services.a]\ncommand = [\"a\", 1]\n",
    // keys of the other kind
    "[services.a]\nimage = \"x\"\nsocket = 8080\n",
    "[services.a]\nimage = \"x\"\nnotify = true\n",
    "[services.a]\nimage = \"x\"\ncwd = \".\"\n",
    "[services.a]\nimage = \"x\"\nbuild = \"make\"\n",
    "[services.a]\ncommand = \"a\"\nvolumes = [\"./x:/x\"]\n",
    "[services.a]\ncommand = \"a\"\ninit = true\n",
    "[services.a]\nimage = \"x\"\ninit = \"yes\"\n",
    "[services.a]\ncommand = \"a\"\nports = [\"8080:80\"]\n",
    "[services.a]\ncommand = \"a\"\nhealth = { docker = true }\n",
    // values
    "[services.a]\ncommand = \"a\"\nstop_timeout = \"10\"\n",
    "[services.a]\ncommand = \"a\"\nstop_timeout = 10\n",
    "[services.a]\ncommand = \"a\"\nrestart_window = \"1sec\"\n",
    "[services.a]\ncommand = \"a\"\nrestart = \"sometimes\"\n",
    "[services.a]\ncommand = \"a\"\nredeploy = \"blue-green\"\n",
    "[services.a]\ncommand = \"a\"\nstop_signal = \"SIGFOO\"\n",
    "[services.a]\ncommand = \"a\"\nmax_restarts = -1\n",
    "[services.a]\ncommand = \"a\"\nports = [0]\n",
    "[services.a]\ncommand = \"a\"\nports = [70000]\n",
    "[services.a]\ncommand = \"a\"\nsocket = \"7001\"\n",
    "[services.a]\ncommand = \"a\"\nsocket = \"localhost:99999\"\n",
    "[services.a]\nimage = \"x\"\nports = [\"80\"]\n",
    "[services.a]\nimage = \"x\"\nports = [\"localhost:80:8080\"]\n",
    "[services.a]\nimage = \"x\"\nvolumes = [\"data\"]\n",
    "[services.a]\nimage = \"x\"\nvolumes = [\"cache:relative\"]\n",
    "[services.a]\nimage = \"x\"\nvolumes = [\"cache:/x:rx\"]\n",
    "[services.a]\nimage = \" \"\n",
    "[services.a]\ncommand = \"a\"\nwatch = [\"\"]\n",
    "[services.a]\ncommand = \"a\"\nwatch = \"src\"\n",
    "[services.a]\ncommand = \"a\"\nenv = { RATIO = 1.5 }\n",
    "[services.a]\ncommand = \"a\"\nrestart_on_unhealthy = \"yes\"\n",
    "[services.a]\ncommand = \"a\"\nstop_timeout = 1979-05-27T07:32:00Z\n",
    // probes
    "[services.a]\ncommand = \"a\"\nhealth = { interval = \"1s\" }\n",
    "[services.a]\ncommand = \"a\"\nhealth = { http = \"http://h/\", exec = \"true\" }\n",
    "[services.a]\ncommand = \"a\"\nnotify = true\nhealth = { tcp = 1 }\n",
    "[services.a]\ncommand = \"a\"\nwatchdog = \"5s\"\n",
    "[services.a]\ncommand = \"a\"\nnotify = true\nwatchdog = \"0s\"\n",
    "[services.a]\ncommand = \"a\"\nstart_timeout = \"1m\"\n",
    "[services.a]\ncommand = \"a\"\nhealth = { tcp = 1, expect_body = \"ok\" }\n",
    "[services.a]\ncommand = \"a\"\nhealth = { http = \"https://localhost/\" }\n",
    "[services.a]\ncommand = \"a\"\nhealth = { http = \"localhost:80/health\" }\n",
    "[services.a]\ncommand = \"a\"\nhealth = { tcp = 1, interval = \"0s\" }\n",
    "[services.a]\ncommand = \"a\"\nhealth = { tcp = 1, retries = 0 }\n",
    "[services.a]\ncommand = \"a\"\nhealth = \"tcp\"\n",
    // dependencies
    "[services.a]\ncommand = \"a\"\ndepends_on = [\"b\", \"b\"]\n[services.b]\ncommand = \"b\"\n",
    "[services.a]\ncommand = \"a\"\ndepends_on = { b = \"helthy\" }\n[services.b]\ncommand = \"b\"\n",
    "[services.a]\ncommand = \"a\"\ndepends_on = { b = true }\n[services.b]\ncommand = \"b\"\n",
    "[services.a]\ncommand = \"a\"\ndepends_on = \"b\"\n[services.b]\ncommand = \"b\"\n",
    // replicas and profiles
    "[services.a]\ncommand = \"a\"\nreplicas = 1001\n",
    "[services.a]\ncommand = \"a\"\nreplicas = -1\n",
    "[services.a]\ncommand = \"a\"\nreplicas = \"2\"\n",
    "[services.a]\ncommand = \"a\"\nprofiles = \"debug\"\n",
    "[services.a]\ncommand = \"a\"\nprofiles = []\n",
    "[services.a]\ncommand = \"a\"\nprofiles = [\"de bug\"]\n",
    "[services.\"web.2\"]\ncommand = \"a\"\n",
];

#[test]
fn invalid_manifests_are_rejected_by_both() {
    let dir = project_folder();
    for source in INVALID {
        if let Ok(manifest) = validator_verdict(dir.path(), source) {
            panic!("the validator accepts:\n{source}\n{manifest:#?}");
        }
        assert!(
            !schema_errors(source).is_empty(),
            "the schema accepts:\n{source}"
        );
    }
}

/// Writing a key's schema `default` gives the same manifest as leaving it out. A key is
/// tried in each base its table has (a process, a container) that the schema lets it
/// into; there must be one.
#[test]
fn each_default_in_the_schema_is_the_validators() {
    let dir = project_folder();
    let bases: &[(&str, &[&str])] = &[
        (PROJECT_DEF, &["[services.a]\ncommand = \"a\"\n[project]\n"]),
        (
            SERVICE_DEF,
            &[
                "[services.a]\ncommand = \"a\"\nhealth = { tcp = 1 }\n",
                "[services.a]\nimage = \"x\"\n",
            ],
        ),
        (
            HEALTH_DEF,
            &[
                "[services.a]\ncommand = \"a\"\n[services.a.health]\ntcp = 1\n",
                "[services.a]\nimage = \"x\"\n[services.a.health]\ndocker = true\n",
            ],
        ),
        (
            BACKOFF_DEF,
            &["[services.a]\ncommand = \"a\"\n[services.a.backoff]\n"],
        ),
        (
            IMAGE_BUILD_DEF,
            &["[services.a]\nimage = \"x\"\n[services.a.build]\n"],
        ),
        (
            DEPENDENCY_DEF,
            &["[services.b]\ncommand = \"b\"\n[services.a]\ncommand = \"a\"\n[services.a.depends_on.b]\n"],
        ),
    ];
    let schema = manifest_schema();
    let mut checked = 0;
    for (table, sources) in bases {
        let properties = def(table)["properties"].clone();
        let properties = properties.as_object().expect("a table lists its keys");
        for (key, property) in properties {
            // A default is on the key, or on the shape it refers to.
            let default = property.get("default").cloned().or_else(|| {
                let reference = property.get("$ref")?.as_str()?;
                let name = reference.strip_prefix("#/$defs/")?;
                schema["$defs"][name].get("default").cloned()
            });
            let Some(default) = default else { continue };
            let value = toml::Value::try_from(&default).expect("a default is a TOML value");
            let mut accepted = 0;
            for base in sources.iter() {
                // Each base ends inside the table, so the key lands in it.
                let with_default = format!("{base}{key} = {value}\n");
                if !schema_errors(&with_default).is_empty() {
                    continue;
                }
                accepted += 1;
                let expected = validator_verdict(dir.path(), base)
                    .unwrap_or_else(|err| panic!("the base is valid:\n{base}\n{err}"));
                let actual = validator_verdict(dir.path(), &with_default)
                    .unwrap_or_else(|err| panic!("{key} = {value} is refused:\n{err}"));
                assert_eq!(
                    actual, expected,
                    "in {table}, `{key} = {value}` is not the same as leaving `{key}` out"
                );
            }
            assert!(accepted > 0, "no base takes `{key} = {value}` in {table}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} defaults were checked");
}

/// The repository's manifests: the demo and every example.
fn repository_manifests() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("read the folder")
            .map(|entry| entry.expect("a folder entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, found);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                found.push(path);
            }
        }
    }
    let mut found = vec![repository().join("fleet.toml")];
    walk(&repository().join("examples"), &mut found);
    found
}

#[test]
fn the_demo_and_every_example_pass_both() {
    let manifests = repository_manifests();
    assert!(manifests.len() >= 2, "found {manifests:?}");
    for path in manifests {
        let source = std::fs::read_to_string(&path).expect("read the manifest");
        // `parse` checks the schema too, once the validator accepts.
        if let Err(err) = crate::manifest::parse(&path, &source) {
            panic!("{}", err.render(false));
        }
        assert!(schema_errors(&source).is_empty());
    }
}

/// Every ```toml block in the README, with the line it starts on.
fn readme_snippets() -> Vec<(usize, String)> {
    let readme = std::fs::read_to_string(repository().join("README.md")).expect("read README.md");
    let mut snippets = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in readme.lines().enumerate() {
        match &mut current {
            None if line.trim_start().starts_with("```toml") => {
                current = Some((index + 2, String::new()));
            }
            Some(_) if line.trim_start().starts_with("```") => {
                snippets.extend(current.take());
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    snippets
}

#[test]
fn every_toml_snippet_in_the_readme_passes_the_schema() {
    let snippets = readme_snippets();
    assert!(snippets.len() >= 3, "found {} snippets", snippets.len());
    for (line, snippet) in snippets {
        let errors = schema_errors(&snippet);
        assert!(
            errors.is_empty(),
            "README.md:{line}: the schema rejects this snippet (a README manifest is whole: \
             a service with its `command` or `image`):\n{}\n{snippet}",
            errors.join("\n")
        );
    }
}

#[test]
fn the_readme_shows_the_schema_line() {
    let readme = std::fs::read_to_string(repository().join("README.md")).expect("read README.md");
    assert!(readme.contains("fleet schema > .fleet-schema.json"));
    assert!(readme.contains("#:schema ./.fleet-schema.json"));
}

/// What taplo (Even Better TOML) needs that a validator does not, found by driving
/// `taplo lsp` by hand: it offers no key completion for a table whose schema has an
/// `allOf` (and overflowed its stack on an `allOf` of two patterns), and its hover
/// shows a `$ref`'s description rather than one written beside it.
#[test]
fn taplo_completes_and_hovers_every_key() {
    fn walk(schema: &Value, path: &str, problems: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                if map.contains_key("allOf") {
                    problems.push(format!("{path}: allOf"));
                }
                if map.contains_key("$ref") && map.contains_key("description") {
                    problems.push(format!("{path}: a description beside $ref"));
                }
                for (key, value) in map {
                    walk(value, &format!("{path}/{key}"), problems);
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}/{index}"), problems);
                }
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    walk(&manifest_schema(), "#", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    // Every key has its own hover text.
    for table in [
        PROJECT_DEF,
        SERVICE_DEF,
        HEALTH_DEF,
        BACKOFF_DEF,
        IMAGE_BUILD_DEF,
        DEPENDENCY_DEF,
        EXPORT_DEF,
    ] {
        for (key, property) in def(table)["properties"]
            .as_object()
            .expect("a table lists its keys")
        {
            let described = property.get("description").is_some()
                || property.get("$ref").is_some_and(|reference| {
                    let name = reference
                        .as_str()
                        .and_then(|reference| reference.strip_prefix("#/$defs/"))
                        .unwrap_or_default();
                    def(name).get("description").is_some()
                });
            assert!(described, "`{key}` in {table} has no description");
        }
    }
}
