//! Editors and shells: `fleet schema`, `fleet completions` run in a real bash (and zsh
//! and fish where installed), `fleet man` rendered by man/groff where installed.

use std::path::Path;
use std::process::Command;

use crate::support::{fleet_binary, Project};

const THREE_SERVICES: &str = r#"
[services.web]
command = "web"
[services.db]
command = "db"
[services."api.v2"]
command = "api"
"#;

#[test]
fn schema_prints_the_manifest_schema_anywhere() {
    // No manifest here: the schema needs none.
    let project = Project::new();
    let done = project.run(&["schema"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let printed: serde_json::Value = serde_json::from_str(&done.stdout).expect("JSON");
    assert_eq!(printed, fleet::manifest::schema::manifest_schema());
    assert_eq!(
        printed["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

/// What bash's completion of `words` (the last one being completed) offers, using the
/// script `fleet completions bash` prints, in `dir`.
fn bash_completes(dir: &Path, words: &[&str]) -> Vec<String> {
    let script = dir.join("fleet.bash");
    let generated = Command::new(fleet_binary())
        .args(["completions", "bash"])
        .output()
        .expect("run fleet completions");
    assert!(generated.status.success());
    std::fs::write(&script, &generated.stdout).expect("write the script");
    // As bash calls a completion function: COMP_WORDS and COMP_CWORD set, then the
    // function registered for the command, with the command, the word and the one before.
    let quoted: Vec<String> = words
        .iter()
        .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
        .collect();
    let program = format!(
        r#"source "$1" || exit 9
spec=$(complete -p fleet) || exit 8
function=$(sed -E 's/.*-F ([^ ]+).*/\1/' <<< "$spec")
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$function" "${{COMP_WORDS[0]}}" "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        words = quoted.join(" ")
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(program)
        .arg("bash")
        .arg(&script)
        .current_dir(dir)
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "bash failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_service_names_from_the_manifest() {
    let project = Project::new()
        .manifest(THREE_SERVICES)
        .file("other.toml", "[services.x1]\ncommand = \"x\"\n");
    let fleet = fleet_binary().to_str().expect("a UTF-8 path");
    let dir = project.dir();
    let services = ["web", "db", "api.v2"];
    for command in [
        "up", "logs", "start", "stop", "restart", "redeploy", "run", "exec",
    ] {
        assert_eq!(
            bash_completes(dir, &[fleet, command, ""]),
            services,
            "fleet {command}"
        );
    }
    // After `--` comes the command `run` and `exec` run, not a service.
    for command in ["run", "exec"] {
        assert!(
            !bash_completes(dir, &[fleet, command, "web", "--", ""]).contains(&"db".to_string()),
            "fleet {command} web -- "
        );
    }
    assert_eq!(bash_completes(dir, &[fleet, "restart", "d"]), ["db"]);
    // After the first service, more of them.
    assert_eq!(bash_completes(dir, &[fleet, "stop", "web", ""]), services);
    // An option's value is not a service; after it, services again.
    assert!(!bash_completes(dir, &[fleet, "logs", "-n", ""]).contains(&"web".to_string()));
    assert_eq!(
        bash_completes(dir, &[fleet, "logs", "-n", "5", ""]),
        services
    );
    // The manifest the command line names, in both spellings.
    assert_eq!(
        bash_completes(dir, &[fleet, "-f", "other.toml", "restart", ""]),
        ["x1"]
    );
    assert_eq!(
        bash_completes(dir, &[fleet, "--file", "=", "other.toml", "restart", ""]),
        ["x1"]
    );
    // Elsewhere, clap's own completion: commands, options.
    let commands = bash_completes(dir, &[fleet, ""]);
    for command in ["up", "ps", "schema", "completions", "man"] {
        assert!(commands.contains(&command.to_string()), "{commands:?}");
    }
    assert!(
        !commands.iter().any(|word| word.starts_with("__")),
        "the hidden command is offered: {commands:?}"
    );
    assert_eq!(bash_completes(dir, &[fleet, "logs", "--fol"]), ["--follow"]);
    assert!(!bash_completes(dir, &[fleet, "check", ""]).contains(&"web".to_string()));
}

#[test]
fn bash_completion_is_quiet_without_a_manifest() {
    let project = Project::new();
    let fleet = fleet_binary().to_str().expect("a UTF-8 path");
    // Nothing to offer; bash then falls back to file names (`-o default`).
    assert!(bash_completes(project.dir(), &[fleet, "restart", ""]).is_empty());
    let done = project.run(&["__services"]);
    assert_eq!(
        (done.code, done.stdout.as_str(), done.stderr.as_str()),
        (0, "", "")
    );
}

#[test]
fn services_lists_names_of_a_manifest_that_does_not_validate_yet() {
    // Mid-edit: an unknown key and a missing command, still names to complete.
    let project = Project::new().manifest("[services.zeta]\ncomand = \"z\"\n[services.alpha]\n");
    let done = project.run(&["__services"]);
    assert_eq!(done.code, 0);
    assert_eq!(done.stdout, "zeta\nalpha\n");
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|output| output.status.success())
}

/// zsh and fish are not on every machine: their scripts are checked by their own
/// parser where they are, and always for the service hook.
#[test]
fn zsh_and_fish_scripts_parse_and_complete_services() {
    let project = Project::new();
    for (shell, check) in [("zsh", ["-n"]), ("fish", ["--no-execute"])] {
        let done = project.run(&["completions", shell]);
        assert_eq!(done.code, 0, "{}", done.stderr);
        assert!(
            done.stdout.contains("_fleet_services"),
            "{shell}: no service completion"
        );
        assert!(
            !done.stdout.contains("detached-child"),
            "{shell}: a hidden flag"
        );
        // Each `services` argument is completed by the hook: up, start, stop, restart,
        // redeploy, logs, export swarm, export kubernetes, run and exec.
        if shell == "zsh" {
            assert_eq!(done.stdout.matches(":_fleet_services'").count(), 10);
        } else {
            assert_eq!(done.stdout.matches("(__fish_fleet_services)").count(), 10);
            assert!(
                done.stdout.contains(
                    "complete -c fleet -n \"__fish_fleet_using_subcommand export; and \
                     __fish_seen_subcommand_from swarm\" -f -a \"(__fish_fleet_services)\""
                ),
                "fish: export swarm's services"
            );
        }
        if !installed(shell) {
            eprintln!("{shell} is not installed: its script is not parsed");
            continue;
        }
        let script = project.path(&format!("fleet.{shell}"));
        std::fs::write(&script, &done.stdout).expect("write the script");
        let output = Command::new(shell)
            .args(check)
            .arg(&script)
            .output()
            .expect("run the shell");
        assert!(
            output.status.success(),
            "{shell} rejects the script:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn man_page_renders() {
    let project = Project::new();
    let done = project.run(&["man"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let page = done.stdout;
    assert!(page.contains(".TH fleet 1"), "{page}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "SUBCOMMANDS",
        "\"EXIT STATUS\"",
        "ENVIRONMENT",
        "FILES",
    ] {
        assert!(
            page.contains(&format!(".SH {section}\n")),
            "no {section}:\n{page}"
        );
    }
    for command in [
        "up",
        "ps",
        "logs",
        "restart",
        "down",
        "schema",
        "completions",
        "man",
    ] {
        assert!(
            page.contains(&format!("fleet\\-{command}(1)")),
            "no {command}"
        );
    }
    for code in ["0", "1", "2", "3", "4", "5", "130"] {
        assert!(
            page.contains(&format!("\\fB{code}\\fR\n")),
            "no exit code {code}"
        );
    }
    assert!(!page.contains("__services") && !page.contains("fleet\\-help"));
    let path = project.path("fleet.1");
    std::fs::write(&path, &page).expect("write the page");

    if installed("groff") {
        let output = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .expect("run groff");
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "groff warns:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if installed("man") {
        let output = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("run man");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for expected in [
            "EXIT STATUS",
            "fleet-restart(1)",
            "No fleet is running for this project.",
        ] {
            assert!(text.contains(expected), "no {expected:?} in:\n{text}");
        }
    }

    // One page per command in a folder.
    let done = project.run(&["man", "--dir", "pages"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    for page in [
        "fleet.1",
        "fleet-up.1",
        "fleet-restart.1",
        "fleet-completions.1",
    ] {
        assert!(project.path("pages").join(page).is_file(), "no {page}");
    }
    let up = std::fs::read_to_string(project.path("pages/fleet-up.1")).expect("read");
    assert!(up.contains("\\-\\-wait\\-timeout") && !up.contains("detached\\-child"));
}
