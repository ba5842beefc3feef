//! `import`: translate a docker compose file or a Procfile (`crate::import`) into a
//! `fleet.toml`, write it, and validate it as `check` does; `config`: print the
//! manifest after interpolation and defaults.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{exit, CliError, ImportArgs};
use crate::import::{self, Context, Format, DEFAULT_FILES};
use crate::manifest::interpolate::Variables;
use crate::manifest::{self, render, ManifestError, MANIFEST_FILE};
use crate::supervisor::printer::use_color;

/// Where the manifest goes.
enum Output {
    Stdout,
    File(PathBuf),
}

pub(super) fn import(cwd: &Path, args: ImportArgs) -> Result<i32, CliError> {
    let (source_path, format) = source(cwd, &args)?;
    let absolute = cwd.join(&source_path);
    let source_dir = absolute
        .parent()
        .map_or_else(|| cwd.to_path_buf(), Path::to_path_buf);
    let output = match args.output.as_deref() {
        Some(path) if path == Path::new("-") => Output::Stdout,
        Some(path) => Output::File(cwd.join(path)),
        None => Output::File(source_dir.join(MANIFEST_FILE)),
    };
    if let Output::File(path) = &output
        && path.exists()
        && !args.force
    {
        return Err(CliError::new(
            exit::INVALID,
            format!(
                "error: {} exists; pass --force to overwrite it (nothing was written)",
                path.display()
            ),
        ));
    }
    let text = crate::manifest::read_text_file(&absolute)
        .map_err(|err| CliError::from(ManifestError::unreadable(&source_path, &err)))?;
    let variables = Variables::for_folder(&source_dir)
        .map_err(|err| CliError::new(exit::INVALID, format!("error: {err}")))?;
    // The manifest's relative paths start from its own folder.
    let manifest_path = match &output {
        Output::File(path) => path.clone(),
        Output::Stdout => source_dir.join(MANIFEST_FILE),
    };
    let out_dir = manifest_path
        .parent()
        .map_or_else(|| source_dir.clone(), Path::to_path_buf);
    let context = Context {
        path: &source_path,
        source_dir: &source_dir,
        out_dir: &out_dir,
        variables: &variables,
    };
    let imported = import::import(format, &text, &context)?;
    for warning in imported.render_warnings(&source_path, &text) {
        crate::note!("{warning}");
    }
    let checked = manifest::parse(&manifest_path, &imported.manifest);
    let shown_path = match &output {
        Output::File(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|err| {
                    CliError::new(
                        exit::FAILURE,
                        format!("error: cannot create {}: {err}", parent.display()),
                    )
                })?;
            }
            std::fs::write(path, &imported.manifest).map_err(|err| {
                CliError::new(
                    exit::FAILURE,
                    format!("error: cannot write {}: {err}", path.display()),
                )
            })?;
            path.display().to_string()
        }
        Output::Stdout => {
            write_stdout(&imported.manifest)?;
            "the manifest".to_string()
        }
    };
    let warnings = imported.warnings.len();
    let plural = if warnings == 1 { "" } else { "s" };
    match checked {
        Ok(manifest) => {
            let containers = manifest
                .services
                .iter()
                .filter(|service| service.is_container())
                .count();
            crate::note!(
                "wrote {shown_path}: {} services ({} processes, {containers} containers), {warnings} warning{plural}; fleet check: ok",
                manifest.services.len(),
                manifest.services.len() - containers,
            );
            Ok(exit::SUCCESS)
        }
        Err(err) => Err(CliError::new(
            exit::INVALID,
            format!(
                "{}\n\nwrote {shown_path} ({warnings} warning{plural}), but it does not pass `fleet check`: fix the errors above by hand",
                err.render(use_color(&std::io::stderr())).trim_end()
            ),
        )),
    }
}

/// The file to import and its format: as given, or the first default file here.
fn source(cwd: &Path, args: &ImportArgs) -> Result<(PathBuf, Format), CliError> {
    let (path, found) = match &args.file {
        Some(path) => (path.clone(), Format::of_path(path)),
        None => match import::find_default(cwd) {
            Some((path, format)) => {
                let relative = path.file_name().map_or_else(|| path.clone(), PathBuf::from);
                (relative, Some(format))
            }
            None => {
                let names: Vec<&str> = DEFAULT_FILES.iter().map(|(name, _)| *name).collect();
                return Err(CliError::new(
                    exit::INVALID,
                    format!(
                        "error: nothing to import: no {} in {}",
                        names.join(", "),
                        cwd.display()
                    ),
                ));
            }
        },
    };
    match args.format.or(found) {
        Some(format) => Ok((path, format)),
        None => Err(CliError::new(
            exit::INVALID,
            format!(
                "error: cannot tell the format of {} from its name: pass --format compose or --format procfile",
                path.display()
            ),
        )),
    }
}

/// Prints the manifest after interpolation and defaults, as a complete `fleet.toml`.
pub(super) fn config(path: &Path) -> Result<i32, CliError> {
    let manifest = manifest::load(path)?;
    write_stdout(&render::to_toml(&manifest))?;
    Ok(exit::SUCCESS)
}

/// Writes `text` to stdout whole; a closed or full stdout is the command's error.
fn write_stdout(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|err| {
            CliError::new(
                exit::FAILURE,
                format!("error: cannot write to stdout: {err}"),
            )
        })
}
