//! Bad manifests through the real binary: `fleet check` and `fleet up` exit 2, print
//! the rendered error on stderr, and start nothing.
//!
//! The renderer's details are pinned by the unit tests in `src/manifest`; these pin
//! that the binary prints exactly that text, and nothing else, and exits 2. fleet names
//! the manifest by its absolute path, so expected texts say `{dir}` for the project
//! folder (see [`Project::redact`]).

use crate::support::Project;

/// A service line that would leave a trace if fleet started it. Kept on its own line,
/// away from the errors, so the placeholder paths never shift a caret.
const STARTER: &str = r#"command = "{helper} --pidfile {dir}/started.pid""#;

/// Runs `fleet -f fleet.toml check` and `fleet up --no-tui` (which finds fleet.toml
/// itself) and checks that both reject the manifest with exactly `expected` on stderr.
fn assert_rejected(project: &Project, expected: &str) {
    for args in [&["-f", "fleet.toml", "check"][..], &["up", "--no-tui"][..]] {
        let finished = project.run(args);
        let stderr = project.redact(&finished.stderr);
        assert_eq!(
            stderr,
            expected,
            "stderr of `fleet {}`:\n{stderr}",
            args.join(" ")
        );
        assert_eq!(
            finished.code,
            2,
            "`fleet {}`: {finished:#?}",
            args.join(" ")
        );
        assert_eq!(
            finished.stdout,
            "",
            "`fleet {}` printed to stdout",
            args.join(" ")
        );
    }
    assert!(
        !project.path("started.pid").exists(),
        "a service was started"
    );
    assert!(
        !project.path(".fleet").exists(),
        "fleet created .fleet/ for a manifest it rejected"
    );
    project.assert_nothing_left();
}

fn project_with(manifest: &str) -> Project {
    Project::new().var("starter", STARTER).manifest(manifest)
}

#[test]
fn syntax_error() {
    let project = project_with(
        r#"[services.web]
{starter}
ports = [1, 2
"#,
    );
    assert_rejected(
        &project,
        r#"error: unclosed array, expected `]`
 --> {dir}/fleet.toml:3:14
  |
3 | ports = [1, 2
  |              ^

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn unknown_key_with_did_you_mean() {
    let project = project_with(
        r#"[services.web]
{starter}
stop_timout = "5s"
"#,
    );
    assert_rejected(
        &project,
        r#"error: unknown key `stop_timout` in service `web`
 --> {dir}/fleet.toml:3:1
  |
3 | stop_timout = "5s"
  | ^^^^^^^^^^^
  |
  = help: did you mean `stop_timeout`?

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn unknown_dependency() {
    let project = project_with(
        r#"[services.web]
{starter}
depends_on = ["database"]
"#,
    );
    assert_rejected(
        &project,
        r#"error: service `web` depends on unknown service `database`
 --> {dir}/fleet.toml:3:15
  |
3 | depends_on = ["database"]
  |               ^^^^^^^^^^

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn dependency_cycle() {
    let project = project_with(
        r#"[services.a]
{starter}

[services.b]
command = "sleep 60"
depends_on = ["c"]

[services.c]
command = "sleep 60"
depends_on = { b = "started" }
"#,
    );
    assert_rejected(
        &project,
        r#"error: dependency cycle: b -> c -> b
 --> {dir}/fleet.toml:6:15
  |
6 | depends_on = ["c"]
  |               ^^^
  |
  = help: a service starts after its dependencies, so a cycle can never start; remove one of these dependencies

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn duplicate_port() {
    // Nothing binds these ports: the manifest is rejected before any check of them.
    let project = project_with(
        r#"[services.a]
{starter}
ports = [7001]

[services.b]
command = "sleep 60"
ports = [7002, 7001]
"#,
    );
    assert_rejected(
        &project,
        r#"error: port 7001 is declared by both `a` and `b`
 --> {dir}/fleet.toml:7:16
  |
7 | ports = [7002, 7001]
  |                ^^^^ `a` declared it first, on line 3

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn bad_duration() {
    let project = project_with(
        r#"[services.web]
{starter}
stop_timeout = "10 parsecs"
"#,
    );
    assert_rejected(
        &project,
        r#"error: expected a duration with a unit, like "250ms", "10s" or "2m"
 --> {dir}/fleet.toml:3:16
  |
3 | stop_timeout = "10 parsecs"
  |                ^^^^^^^^^^^^
  |
  = help: the units are `ms`, `s`, `m` and `h`, and they combine: "1m30s"

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn unknown_signal() {
    let project = project_with(
        r#"[services.web]
{starter}
stop_signal = "SIGTREM"
"#,
    );
    assert_rejected(
        &project,
        r#"error: unknown signal `SIGTREM`
 --> {dir}/fleet.toml:3:15
  |
3 | stop_signal = "SIGTREM"
  |               ^^^^^^^^^
  |
  = help: did you mean `SIGTERM`?

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn missing_cwd() {
    let project = project_with(
        r#"[services.web]
{starter}
cwd = "nowhere"
"#,
    );
    assert_rejected(
        &project,
        r#"error: working directory `nowhere` does not exist
 --> {dir}/fleet.toml:3:7
  |
3 | cwd = "nowhere"
  |       ^^^^^^^^^
  |
  = help: relative paths start from the manifest's folder

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn missing_env_file() {
    let project = project_with(
        r#"[services.web]
{starter}
env_file = "missing.env"
"#,
    );
    assert_rejected(
        &project,
        r#"error: cannot read env_file `missing.env`: No such file or directory (os error 2)
 --> {dir}/fleet.toml:3:12
  |
3 | env_file = "missing.env"
  |            ^^^^^^^^^^^^^
  |
  = help: relative paths start from the manifest's folder

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn unreadable_env_file() {
    // A folder: it exists, yet cannot be read as a file (file modes would not stop a
    // test running as root).
    let project = project_with(
        r#"[services.web]
{starter}
env_file = "config"
"#,
    );
    std::fs::create_dir(project.path("config")).expect("cannot create the folder");
    assert_rejected(
        &project,
        r#"error: cannot read env_file `config`: not a regular file
 --> {dir}/fleet.toml:3:12
  |
3 | env_file = "config"
  |            ^^^^^^^^

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn an_env_file_that_never_ends_or_never_opens_is_refused_at_once() {
    // /dev/zero would be read forever, and a FIFO blocks its reader until someone
    // writes: each gets an error, and nothing waits.
    for (file, column_end) in [("/dev/zero", "^^^^^^^^^^^"), ("pipe", "^^^^^^")] {
        let project = project_with(&format!(
            "[services.web]\n{{starter}}\nenv_file = \"{file}\"\n"
        ));
        nix::unistd::mkfifo(
            &project.path("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        assert_rejected(
            &project,
            &format!(
                r#"error: cannot read env_file `{file}`: not a regular file
 --> {{dir}}/fleet.toml:3:12
  |
3 | env_file = "{file}"
  |            {column_end}

error: could not load {{dir}}/fleet.toml: 1 error
"#
            ),
        );
    }
}

#[test]
fn empty_manifest() {
    let project = Project::new().manifest("");
    assert_rejected(
        &project,
        r#"error: no services defined
 --> {dir}/fleet.toml:1:1
  |
1 |
  | ^
  |
  = help: add a table for each service, like:
          [services.web]
          command = "python3 -m http.server 8000"

error: could not load {dir}/fleet.toml: 1 error
"#,
    );
}

#[test]
fn every_error_in_the_file_is_reported() {
    let project = project_with(
        r#"[services.web]
{starter}
stop_signal = "SIGTREM"
restrat = "always"
depends_on = ["database"]
"#,
    );
    assert_rejected(
        &project,
        r#"error: unknown signal `SIGTREM`
 --> {dir}/fleet.toml:3:15
  |
3 | stop_signal = "SIGTREM"
  |               ^^^^^^^^^
  |
  = help: did you mean `SIGTERM`?

error: unknown key `restrat` in service `web`
 --> {dir}/fleet.toml:4:1
  |
4 | restrat = "always"
  | ^^^^^^^
  |
  = help: did you mean `restart`?

error: service `web` depends on unknown service `database`
 --> {dir}/fleet.toml:5:15
  |
5 | depends_on = ["database"]
  |               ^^^^^^^^^^

error: could not load {dir}/fleet.toml: 3 errors
"#,
    );
}

#[test]
fn a_missing_manifest_file() {
    let project = Project::new();
    for args in [
        &["-f", "other.toml", "check"][..],
        &["-f", "other.toml", "up"][..],
    ] {
        let finished = project.run(args);
        assert_eq!(finished.code, 2, "{finished:#?}");
        assert_eq!(
            project.redact(&finished.stderr),
            "error: cannot read {dir}/other.toml: No such file or directory (os error 2)\n"
        );
    }
    assert!(!project.path(".fleet").exists());
}
