//! `schema`, `completions`, `man` and the hidden `__services`: what editors and shells
//! need to know about fleet, generated from the same definitions the program uses (the
//! manifest's schema from `manifest::schema`, the rest from the clap definitions in
//! `cli`), so nothing here can drift from them.
//!
//! Completion of service names: clap_complete writes a static script per shell; this
//! module adds a small function in the shell's own language that asks
//! `fleet [-f FILE] __services` for the names in the manifest the command line would
//! use, and hooks it in where a command takes services. `__services` reads the
//! manifest as TOML only (the names of the `[services.*]` tables, in file order), so a
//! manifest that is mid-edit and not yet valid still completes; it prints nothing and
//! fails quietly when there is no manifest, since a completion must never print errors
//! into the user's command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory, Subcommand, ValueEnum};

use super::{exit, Cli, CliError};
use crate::manifest;

/// The shells `fleet completions` writes scripts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The commands for editors and shells (flattened into [`super::Commands`]).
#[derive(Subcommand, Debug)]
pub enum EditorCommand {
    /// Print the JSON Schema of fleet.toml, for editors: `fleet schema > .fleet-schema.json`.
    Schema,
    /// Print a shell completion script; it completes service names from the manifest.
    Completions {
        /// The shell to write the script for.
        shell: CompletionShell,
    },
    /// Print the man page; with --dir, write fleet.1 and a page per command there.
    Man {
        /// Write the pages into this folder (created if missing) instead of printing fleet.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Internal: the manifest's service names, one a line, for the completion scripts.
    #[command(name = SERVICES_COMMAND, hide = true)]
    Services,
}

/// Runs one of these commands; `file` and `cwd` find the manifest for `__services`.
pub(super) fn run(
    command: &EditorCommand,
    file: Option<&Path>,
    cwd: &Path,
) -> Result<i32, CliError> {
    match command {
        EditorCommand::Schema => schema(),
        EditorCommand::Completions { shell } => completions(*shell),
        EditorCommand::Man { dir } => man(dir.as_deref()),
        EditorCommand::Services => services(file, cwd),
    }
}

/// The hidden command the completion scripts call.
const SERVICES_COMMAND: &str = "__services";

/// The name of the positional argument that takes services, in every command that has
/// one: the completion scripts complete service names there.
const SERVICES_ARG: &str = "services";

/// `fleet schema`: the JSON Schema of `fleet.toml` on stdout.
fn schema() -> Result<i32, CliError> {
    write_stdout(manifest::schema::manifest_schema_text().as_bytes())
}

/// `fleet completions SHELL`: the completion script on stdout.
fn completions(shell: CompletionShell) -> Result<i32, CliError> {
    write_stdout(completion_script(shell).as_bytes())
}

/// `fleet man [--dir DIR]`: the man page on stdout, or `fleet.1` and one page per
/// command (`fleet-up.1`, ...) written into DIR.
fn man(dir: Option<&Path>) -> Result<i32, CliError> {
    // `fleet help` is `--help` again; it needs no page.
    let command = Cli::command().disable_help_subcommand(true);
    let Some(dir) = dir else {
        return write_stdout(&man_page(command)?);
    };
    let failed = |err: std::io::Error| {
        CliError::new(
            exit::FAILURE,
            format!("cannot write the man pages into {}: {err}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    clap_mangen::generate_to(command.clone(), dir).map_err(failed)?;
    // The top page again, with the sections clap_mangen does not know of.
    std::fs::write(dir.join("fleet.1"), man_page(command)?).map_err(failed)?;
    Ok(exit::SUCCESS)
}

/// `fleet __services`: the manifest's service names, one a line, for the completion
/// scripts. Quiet on every failure.
fn services(file: Option<&Path>, cwd: &Path) -> Result<i32, CliError> {
    let names = manifest::find(file, cwd)
        .ok()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|source| declared_services(&source))
        .unwrap_or_default();
    let mut text = String::new();
    for name in names {
        text.push_str(&name);
        text.push('\n');
    }
    // A closed pipe (the shell stopped reading) is not worth a word.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(exit::SUCCESS)
}

/// The keys of the `services` table in the order written; `None` if the text is not
/// TOML or has no such table.
fn declared_services(source: &str) -> Option<Vec<String>> {
    let document = toml::de::DeTable::parse(source).ok()?;
    let services = document.get_ref().get("services")?;
    let toml::de::DeValue::Table(table) = services.get_ref() else {
        return None;
    };
    let mut names: Vec<(usize, String)> = table
        .iter()
        .map(|(key, _)| (key.span().start, key.get_ref().to_string()))
        .collect();
    // The parser keeps keys sorted; a person lists them in the file's order.
    names.sort();
    Some(names.into_iter().map(|(_, name)| name).collect())
}

fn write_stdout(bytes: &[u8]) -> Result<i32, CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|err| CliError::new(exit::FAILURE, format!("cannot write to stdout: {err}")))?;
    Ok(exit::SUCCESS)
}

/// `command` without its hidden subcommands and options (`__services`, `up
/// --detached-child`), which clap_complete would offer too.
fn without_hidden(command: &Command) -> Command {
    let mut slim = Command::new(command.get_name().to_string())
        .args(
            command
                .get_arguments()
                .filter(|arg| !arg.is_hide_set())
                .cloned(),
        )
        .subcommands(
            command
                .get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .map(without_hidden),
        );
    if let Some(about) = command.get_about() {
        slim = slim.about(about.clone());
    }
    if let Some(version) = command.get_version() {
        slim = slim.version(version.to_string());
    }
    slim
}

/// The commands whose positional arguments are services.
fn commands_taking_services(command: &Command) -> Vec<String> {
    command
        .get_subcommands()
        .filter(|sub| {
            sub.get_positionals()
                .any(|arg| arg.get_id() == SERVICES_ARG)
        })
        .map(|sub| sub.get_name().to_string())
        .collect()
}

/// Every spelling of an option that takes a value (`-f`, `--file`, `-n`, `--lines`,
/// ...): after one of these, the next word is its value, not a service.
fn options_taking_values(command: &Command) -> Vec<String> {
    let mut spellings = Vec::new();
    let mut add = |command: &Command| {
        for arg in command.get_arguments() {
            if arg.is_positional() || !arg.get_action().takes_values() {
                continue;
            }
            if let Some(short) = arg.get_short() {
                spellings.push(format!("-{short}"));
            }
            if let Some(long) = arg.get_long() {
                spellings.push(format!("--{long}"));
            }
        }
    };
    add(command);
    for sub in command.get_subcommands() {
        add(sub);
    }
    spellings.sort();
    spellings.dedup();
    spellings
}

/// clap_complete's script for `shell`, plus the service-name completion.
fn completion_script(shell: CompletionShell) -> String {
    let mut command = without_hidden(&Cli::command());
    let name = command.get_name().to_string();
    let generator = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut command, &name, &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    let commands = commands_taking_services(&command);
    let value_options = options_taking_values(&command);
    match shell {
        CompletionShell::Bash => bash_services(script, &name, &commands, &value_options),
        CompletionShell::Zsh => zsh_services(script, &name),
        CompletionShell::Fish => fish_services(script, &name, &fish_conditions(&command)),
    }
}

/// Bash: a wrapper around clap_complete's `_fleet` that answers with service names
/// where a command takes services, and registered in its place.
fn bash_services(
    script: String,
    name: &str,
    commands: &[String],
    value_options: &[String],
) -> String {
    format!(
        r#"{script}
# Service names from the manifest, where a command takes services.
_{name}_services() {{
    local i word file=() command="" dashes=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        # After `--` comes a command to run (`fleet run -- CMD`), not services.
        if [[ -n "$command" && "$word" == "--" ]]; then
            dashes=1
        fi
        if [[ -z "$command" ]]; then
            case "$word" in
                -f|--file)
                    ((i++))
                    # `--file=x` arrives as `--file`, `=`, `x`.
                    if [[ "${{COMP_WORDS[i]}}" == "=" ]]; then ((i++)); fi
                    file=(--file "${{COMP_WORDS[i]}}")
                    ;;
                -f?*) file=(--file "${{word#-f}}") ;;
                -*) ;;
                *) command="$word" ;;
            esac
        fi
    done
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    case "$command" in
        {commands})
            if [[ -z "$dashes" && "$cur" != -* && " {value_options} " != *" $prev "* ]]; then
                local IFS=$'\n'
                COMPREPLY=($(compgen -W "$("${{COMP_WORDS[0]}}" "${{file[@]}}" {SERVICES_COMMAND} 2>/dev/null)" -- "$cur"))
                return 0
            fi
            ;;
    esac
    _{name} "$@"
}}

if [[ "${{BASH_VERSINFO[0]}}" -eq 4 && "${{BASH_VERSINFO[1]}}" -ge 4 || "${{BASH_VERSINFO[0]}}" -gt 4 ]]; then
    complete -F _{name}_services -o nosort -o bashdefault -o default {name}
else
    complete -F _{name}_services -o bashdefault -o default {name}
fi
"#,
        commands = commands.join("|"),
        value_options = value_options.join(" "),
    )
}

/// Zsh: clap_complete completes a `services` argument with `_default`; that becomes
/// a function that offers the manifest's services.
fn zsh_services(script: String, name: &str) -> String {
    let services_action =
        regex::Regex::new(&format!(r"(:{SERVICES_ARG}(?: -- [^'\n]*)?):_default'"))
            .unwrap_or_else(|_| unreachable!("the pattern is a fixed, valid regex"));
    let script = services_action.replace_all(&script, format!("$1:_{name}_services'"));
    // The function must exist before compdef runs the main function, and clap's script
    // ends by running it when sourced; so it goes first.
    format!(
        r#"#compdef {name}

# Service names from the manifest, where a command takes services. The words before
# the command are read from the line itself: _arguments has narrowed $words to the
# command's own.
_{name}_services() {{
    local -a line_words file services expl
    local i
    line_words=(${{(z)BUFFER}})
    for (( i = 2; i <= ${{#line_words}}; i++ )); do
        case ${{line_words[i]}} in
            -f|--file) (( i++ )); file=(--file "${{(Q)line_words[i]}}") ;;
            --file=*) file=(--file "${{(Q)${{line_words[i]#--file=}}}}") ;;
            -f?*) file=(--file "${{(Q)${{line_words[i]#-f}}}}") ;;
            -*) ;;
            *) break ;;
        esac
    done
    services=(${{(f)"$(${{(Q)line_words[1]}} $file {SERVICES_COMMAND} 2>/dev/null)"}})
    _wanted services expl service compadd -a services
}}

{script}"#,
        script = script.trim_start_matches(&format!("#compdef {name}\n")),
    )
}

/// Fish: the condition under which each command that takes services is being typed,
/// nested ones included (`export swarm`), as clap_complete's own lines say it.
fn fish_conditions(command: &Command) -> Vec<String> {
    let name = command.get_name();
    let mut conditions = Vec::new();
    for sub in command.get_subcommands() {
        let takes_services = |command: &Command| {
            command
                .get_positionals()
                .any(|arg| arg.get_id() == SERVICES_ARG)
        };
        if takes_services(sub) {
            conditions.push(format!("__fish_{name}_using_subcommand {}", sub.get_name()));
        }
        for nested in sub
            .get_subcommands()
            .filter(|nested| takes_services(nested))
        {
            conditions.push(format!(
                "__fish_{name}_using_subcommand {}; and __fish_seen_subcommand_from {}",
                sub.get_name(),
                nested.get_name()
            ));
        }
    }
    conditions
}

/// Fish: one more `complete` line per command that takes services.
fn fish_services(script: String, name: &str, conditions: &[String]) -> String {
    let mut text = format!(
        r#"{script}
# Service names from the manifest, where a command takes services.
function __fish_{name}_services
    set -l tokens (commandline -opc)
    set -l file
    set -l i 2
    while test $i -le (count $tokens)
        switch $tokens[$i]
            case -f --file
                set i (math $i + 1)
                set file --file $tokens[$i]
            case '--file=*'
                set file --file (string replace -- --file= '' $tokens[$i])
            case '-f?*'
                set file --file (string sub -s 3 -- $tokens[$i])
            case '-*'
            case '*'
                break
        end
        set i (math $i + 1)
    end
    $tokens[1] $file {SERVICES_COMMAND} 2>/dev/null
end
"#
    );
    for condition in conditions {
        text.push_str(&format!(
            "complete -c {name} -n \"{condition}\" -f -a \"(__fish_{name}_services)\"\n"
        ));
    }
    text
}

/// The top man page: clap_mangen's sections, then exit status, environment and files.
fn man_page(command: Command) -> Result<Vec<u8>, CliError> {
    let failed = |err: std::io::Error| {
        CliError::new(exit::FAILURE, format!("cannot render the man page: {err}"))
    };
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .map_err(failed)?;
    let mut extra = roff::Roff::new();
    extra.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODES {
        extra
            .control("TP", [] as [&str; 0])
            .text([roff::bold(code.to_string())])
            .text([roff::roman(*meaning)]);
    }
    extra.control("SH", ["ENVIRONMENT"]);
    for (variable, meaning) in ENVIRONMENT {
        extra
            .control("TP", [] as [&str; 0])
            .text([roff::bold(*variable)])
            .text([roff::roman(*meaning)]);
    }
    extra.control("SH", ["FILES"]);
    for (file, meaning) in FILES {
        extra
            .control("TP", [] as [&str; 0])
            .text([roff::italic(*file)])
            .text([roff::roman(*meaning)]);
    }
    // `render` starts with the apostrophe preamble clap_mangen's part already has.
    let extra = extra.render();
    let preamble_end = extra.find("\n.SH").map_or(0, |end| end + 1);
    page.extend_from_slice(&extra.as_bytes()[preamble_end..]);
    Ok(page)
}

/// The documented exit codes (`cli::exit`), as the README's table says them.
const EXIT_CODES: &[(i32, &str)] = &[
    (
        exit::SUCCESS,
        "Done as asked (`fleet up` after a graceful stop, too).",
    ),
    (exit::FAILURE, "A runtime failure not listed below."),
    (
        exit::INVALID,
        "Invalid manifest or command line; nothing was started.",
    ),
    (
        exit::START_FAILED,
        "The fleet could not start (a port is busy, a socket can't be bound); nothing was started.",
    ),
    (exit::NOT_RUNNING, "No fleet is running for this project."),
    (
        exit::WAIT_FAILED,
        "`--wait` gave up: a service did not become healthy in time, or failed.",
    ),
    (
        exit::KILLED,
        "`fleet up` got a second Ctrl-C and killed every service at once.",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "FLEET_PROFILES",
        "Profiles to enable, comma-separated, as with --profile (which adds to them).",
    ),
    (
        "DOCKER_HOST",
        "The Docker engine's API, for container services (default: /var/run/docker.sock).",
    ),
    (
        "XDG_RUNTIME_DIR",
        "Where the control socket lives (fleet/<hash>.sock; else /tmp/fleet-<uid>/).",
    ),
    (
        "NO_COLOR",
        "Set and not empty: no colour in the output and the terminal UI.",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "fleet.toml",
        "The manifest, looked for in the current folder and its parents unless -f names one. `fleet schema` prints its JSON Schema.",
    ),
    (
        ".fleet/logs/SERVICE.log",
        "Each service's output, beside the manifest; `fleet logs` reads it back.",
    ),
];
