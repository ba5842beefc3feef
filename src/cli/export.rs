//! `export swarm|kubernetes`: the manifest translated (`crate::export`) for another
//! engine, written to stdout, a file or (Kubernetes) a folder of one file per object,
//! with each key that has no counterpart as a warning and a closing summary on stderr.
//! `--strict` turns those warnings into an error (exit 2) and writes nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{exit, up, CliError, ExportArgs, ExportCommon, ExportTarget};
use crate::export::{self, Options, Target};
use crate::manifest::{self, ManifestError};

pub(super) fn export(cwd: &Path, path: &Path, args: ExportArgs) -> Result<i32, CliError> {
    let (target, common, publish, namespace) = match args.target {
        ExportTarget::Swarm { common, publish } => {
            (Target::Swarm, common, publish, "default".to_string())
        }
        ExportTarget::Kubernetes { common, namespace } => {
            (Target::Kubernetes, common, Default::default(), namespace)
        }
    };
    let ExportCommon {
        services,
        profiles,
        strict,
        output,
    } = common;
    let activation = up::activation(&profiles, &services);
    let manifest = manifest::load_with(path, &activation)?;
    manifest
        .check_activation(&activation)
        .map_err(|problem| CliError::new(exit::INVALID, format!("error: {problem}")))?;
    let source = manifest::read_text_file(path)
        .map_err(|err| CliError::from(ManifestError::unreadable(path, &err)))?;
    let options = Options {
        services: manifest.selection(&activation),
        publish,
        namespace,
    };
    let exported = export::export(&manifest, &source, target, &options).map_err(|err| {
        CliError::new(
            exit::FAILURE,
            format!("error: the export failed its own check, nothing was written: {err}"),
        )
    })?;
    let report = &exported.report;
    let file = shown_path(cwd, path);
    for (service, why) in &report.local {
        crate::note!("note: service `{service}` stays local: {why}");
    }
    let mut findings: Vec<(&str, &export::Finding)> = report
        .notes
        .iter()
        .map(|finding| ("note", finding))
        .chain(report.unmapped.iter().map(|finding| ("warning", finding)))
        .collect();
    findings.sort_by_key(|(_, finding)| (finding.line, finding.column));
    for (level, finding) in findings {
        crate::note!("{level}: {}", finding.render(&file));
    }
    if report.exported.is_empty() {
        return Err(CliError::new(
            exit::INVALID,
            "error: no service to export: every selected service is a process without `export.image`; nothing was written",
        ));
    }
    if strict && !report.unmapped.is_empty() {
        let count = report.unmapped.len();
        return Err(CliError::new(
            exit::INVALID,
            format!(
                "error: {count} key{} with no counterpart in {} (--strict); nothing was written",
                if count == 1 { "" } else { "s" },
                target.title()
            ),
        ));
    }
    let written = write(target, &exported, output.as_deref(), cwd)?;
    crate::note!("{}", report.summary());
    match (target, &written) {
        (Target::Swarm, Some(place)) => crate::note!(
            "deploy: docker stack deploy -c {place} {}",
            stack_name(&manifest.project.name)
        ),
        (Target::Kubernetes, Some(place)) => crate::note!("deploy: kubectl apply -f {place}"),
        (_, None) => {}
    }
    Ok(exit::SUCCESS)
}

/// The manifest's path as messages show it: relative to the current folder when
/// inside it.
fn shown_path(cwd: &Path, path: &Path) -> String {
    path.strip_prefix(cwd).unwrap_or(path).display().to_string()
}

/// A stack name Docker accepts, from the project's name.
fn stack_name(project: &str) -> String {
    project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Writes the documents: stdout (no `-o`, or `-o -`), one file, or a folder (an
/// existing one, or a path ending in `/`) with one file per Kubernetes object (Swarm:
/// `docker-stack.yaml` in it). Returns what was written, for the deploy hint.
fn write(
    target: Target,
    exported: &export::Export,
    output: Option<&Path>,
    cwd: &Path,
) -> Result<Option<String>, CliError> {
    let failed = |place: &Path, err: std::io::Error| {
        CliError::new(
            exit::FAILURE,
            format!("error: cannot write {}: {err}", place.display()),
        )
    };
    let Some(output) = output.filter(|output| *output != Path::new("-")) else {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(exported.to_text().as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|err| failed(Path::new("stdout"), err))?;
        return Ok(None);
    };
    let shown = output.display().to_string();
    let full = cwd.join(output);
    let is_folder = full.is_dir() || shown.ends_with('/');
    if !is_folder {
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|err| failed(parent, err))?;
        }
        std::fs::write(&full, exported.to_text()).map_err(|err| failed(&full, err))?;
        return Ok(Some(shown));
    }
    std::fs::create_dir_all(&full).map_err(|err| failed(&full, err))?;
    match target {
        Target::Swarm => {
            let file = full.join("docker-stack.yaml");
            std::fs::write(&file, exported.to_text()).map_err(|err| failed(&file, err))?;
            Ok(Some(
                PathBuf::from(&shown)
                    .join("docker-stack.yaml")
                    .display()
                    .to_string(),
            ))
        }
        Target::Kubernetes => {
            for (index, document) in exported.documents.iter().enumerate() {
                let file = full.join(format!(
                    "{:02}-{}-{}.yaml",
                    index + 1,
                    document.kind.to_ascii_lowercase(),
                    document.name
                ));
                std::fs::write(&file, &document.text).map_err(|err| failed(&file, err))?;
            }
            Ok(Some(shown))
        }
    }
}
