//! A Procfile (foreman, honcho, overmind) -> a draft `fleet.toml`: one process service
//! per `name: command` line.
//!
//! Owns the Procfile's syntax and foreman's conventions: comments and blank lines are
//! skipped, each process type gets `PORT` (5000, or `PORT` from the environment or
//! `.env`, then 100 more per line, as foreman assigns them; fleet sets `PORT` to a
//! service's first port), and a `.env` beside the
//! Procfile becomes every service's `env_file`. A command runs through the shell, as
//! foreman runs it, so `$PORT` is left to that shell (written `$$PORT` in fleet.toml).
//! Must not write files nor validate the result.

use super::{DraftService, Translation};
use crate::manifest::interpolate::DOTENV;
use crate::manifest::render::TomlValue;

/// foreman's first port, and the step between process types.
const BASE_PORT: u16 = 5000;
const PORT_STEP: u16 = 100;

pub(super) fn translate(translation: &mut Translation<'_>) {
    let source = translation.source;
    let has_dotenv = translation.context.source_dir.join(DOTENV).is_file();
    let mut offset = 0;
    let mut port = match translation.context.variables.get("PORT") {
        None => BASE_PORT,
        Some(text) => match text.trim().parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                translation
                    .error(format!("`PORT` is `{text}`, not a port number"), 0..0)
                    .help = Some(
                    "foreman's base port comes from PORT; unset it or make it a number".to_string(),
                );
                return;
            }
        },
    };
    for line in source.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let text = line.trim_end_matches(['\n', '\r']);
        let trimmed = text.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = text.len() - trimmed.len();
        let Some((name, command)) = trimmed.split_once(':') else {
            let at = start + indent;
            translation
                .error("expected `name: command`", at..start + text.len())
                .help = Some("each line of a Procfile is a process type, a colon and its command, like `web: python3 -m http.server $PORT`".to_string());
            continue;
        };
        let name_span = start + indent..start + indent + name.len();
        let name = name.trim();
        let command = command.trim();
        if !is_valid_name(name) {
            translation
                .error(format!("invalid process name `{name}`"), name_span.clone())
                .help = Some(
                "use letters, digits, `-` and `_`, starting with a letter or digit".to_string(),
            );
            continue;
        }
        if translation
            .draft
            .services
            .iter()
            .any(|service| service.name == name)
        {
            translation.error(format!("process `{name}` is defined twice"), name_span);
            continue;
        }
        if command.is_empty() {
            translation.error(format!("process `{name}` has no command"), name_span);
            continue;
        }
        let mut service = DraftService::new(name);
        service.set("command", TomlValue::string(command));
        service.set(
            "ports",
            TomlValue::Array(vec![TomlValue::Integer(port.into())]),
        );
        if has_dotenv {
            service.set(
                "env_file",
                TomlValue::string(translation.context.rebase(DOTENV)),
            );
        }
        translation.draft.services.push(service);
        port = port.saturating_add(PORT_STEP);
    }
    if translation.errors.is_empty() && translation.draft.services.is_empty() {
        translation.error("the Procfile has no process", 0..0).help =
            Some("add a line like `web: python3 -m http.server $PORT`".to_string());
    }
    translation.draft.header = vec![
        format!(
            "# Imported from {} by `fleet import`.",
            translation.context.file_name()
        ),
        "# PORT is set to each service's port, as foreman assigns them; `$$` is a literal `$`."
            .to_string(),
    ];
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}
