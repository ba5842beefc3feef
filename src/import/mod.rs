//! `fleet import`: a docker compose file or a Procfile translated into a `fleet.toml`.
//!
//! Owns the translations (`compose`, `procfile`), the YAML reader they need (`yaml`)
//! and the draft they both fill (services as keys and TOML values, with comments), which
//! becomes the text of the manifest. It reads the source file's text and the `.env`
//! beside it (through [`crate::manifest::interpolate`]); it writes nothing and never
//! validates the result: `cli::import` writes the file and validates it as `fleet
//! check` does.
//!
//! What a translation cannot map is never dropped silently: it becomes a [`Warning`]
//! with its place in the source file, and a comment in the draft where the key would
//! have gone, holding the source's own lines.

mod compose;
mod procfile;
#[cfg(test)]
mod tests;
pub(crate) mod yaml;

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::manifest::interpolate::Variables;
use crate::manifest::render::{service_header, toml_key, TomlValue};
use crate::manifest::{Diagnostic, ManifestError};

/// The file names `fleet import` looks for, in this order.
pub const DEFAULT_FILES: &[(&str, Format)] = &[
    ("compose.yaml", Format::Compose),
    ("compose.yml", Format::Compose),
    ("docker-compose.yaml", Format::Compose),
    ("docker-compose.yml", Format::Compose),
    ("Procfile", Format::Procfile),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Compose,
    Procfile,
}

impl Format {
    /// The format a file name says: `*.yml`/`*.yaml` are compose files, `Procfile*`
    /// Procfiles.
    pub fn of_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy();
        if name.ends_with(".yml") || name.ends_with(".yaml") {
            Some(Format::Compose)
        } else if name.starts_with("Procfile") || name.ends_with(".procfile") {
            Some(Format::Procfile)
        } else {
            None
        }
    }
}

/// The first default file present in `folder`.
pub fn find_default(folder: &Path) -> Option<(PathBuf, Format)> {
    DEFAULT_FILES.iter().find_map(|(name, format)| {
        let path = folder.join(name);
        path.is_file().then_some((path, *format))
    })
}

/// What a translation reads besides the text.
pub struct Context<'a> {
    /// The source file as the user named it, for messages.
    pub path: &'a Path,
    /// The folder relative paths in the source start from.
    pub source_dir: &'a Path,
    /// The folder the manifest will be in (relative paths in it start there).
    pub out_dir: &'a Path,
    /// For compose's interpolation: the environment over the `.env` beside the file.
    pub variables: &'a Variables,
}

impl Context<'_> {
    /// The file's name, as comments in the manifest cite it.
    fn file_name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        )
    }

    /// A path written relative to the source's folder, as the manifest must write it:
    /// unchanged when the manifest is beside the source, else relative to the
    /// manifest's folder when it is below it, else absolute.
    fn rebase(&self, written: &str) -> String {
        if normalize(self.source_dir) == normalize(self.out_dir) || Path::new(written).is_absolute()
        {
            return written.to_string();
        }
        let full = normalize(&self.source_dir.join(written));
        match full.strip_prefix(normalize(self.out_dir)) {
            Ok(relative) if relative.as_os_str().is_empty() => ".".to_string(),
            Ok(relative) => format!("./{}", relative.display()),
            Err(_) => full.display().to_string(),
        }
    }
}

fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !normal.pop() {
                    normal.push(component);
                }
            }
            other => normal.push(other),
        }
    }
    normal
}

/// Something in the source that was not imported, or not with its full meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Byte range in the source.
    pub span: Range<usize>,
    pub message: String,
}

/// A translated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The `fleet.toml` text.
    pub manifest: String,
    /// In source order.
    pub warnings: Vec<Warning>,
}

impl Imported {
    /// Each warning as `warning: FILE:LINE:COL: message`.
    pub fn render_warnings(&self, path: &Path, source: &str) -> Vec<String> {
        self.warnings
            .iter()
            .map(|warning| {
                let (line, column) = line_and_column(source, warning.span.start);
                format!(
                    "warning: {}:{line}:{column}: {}",
                    path.display(),
                    warning.message
                )
            })
            .collect()
    }
}

/// 1-based line and column (in chars) of a byte offset.
fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let location = crate::manifest::diagnostic::locate(source, offset);
    (location.line, location.column)
}

/// Translates `source` (the text of `context.path`) in `format`. An error holds every
/// problem that stops the translation, located in the source.
pub fn import(
    format: Format,
    source: &str,
    context: &Context<'_>,
) -> Result<Imported, ManifestError> {
    let mut translation = Translation::new(source, context);
    match format {
        Format::Compose => compose::translate(&mut translation),
        Format::Procfile => procfile::translate(&mut translation),
    }
    if !translation.errors.is_empty() {
        return Err(ManifestError::invalid(
            context.path,
            source,
            translation.errors,
        ));
    }
    translation
        .warnings
        .sort_by_key(|warning| warning.span.start);
    Ok(Imported {
        manifest: translation.draft.to_text(),
        warnings: translation.warnings,
    })
}

/// One translation in progress: the draft, and what was found on the way.
struct Translation<'a> {
    source: &'a str,
    context: &'a Context<'a>,
    draft: Draft,
    warnings: Vec<Warning>,
    errors: Vec<Diagnostic>,
}

impl<'a> Translation<'a> {
    fn new(source: &'a str, context: &'a Context<'a>) -> Self {
        Translation {
            source,
            context,
            draft: Draft::default(),
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn error(&mut self, message: impl Into<String>, span: Range<usize>) -> &mut Diagnostic {
        self.errors.push(Diagnostic::new(message, span));
        let last = self.errors.len() - 1;
        &mut self.errors[last]
    }

    /// Records a warning and returns the comment that says the same in the manifest:
    /// `# not imported (FILE:LINE): message`, then the source lines of `lines` (none
    /// when `None`), each after `#   `.
    fn warn(
        &mut self,
        span: Range<usize>,
        message: String,
        lines: Option<Range<usize>>,
    ) -> Vec<String> {
        let (line, _) = line_and_column(self.source, span.start);
        let mut comment = vec![format!(
            "# not imported ({}:{line}): {message}",
            self.context.file_name()
        )];
        if let Some(range) = lines {
            comment.extend(
                self.source_lines(range)
                    .into_iter()
                    .map(|text| format!("#   {text}")),
            );
        }
        self.warnings.push(Warning { span, message });
        comment
    }

    /// The whole lines of the source that `range` touches, without trailing blanks.
    fn source_lines(&self, range: Range<usize>) -> Vec<String> {
        let start = self.source[..range.start.min(self.source.len())]
            .rfind('\n')
            .map_or(0, |newline| newline + 1);
        let end_at = range.end.max(range.start + 1).min(self.source.len());
        let end = self.source[end_at.saturating_sub(1)..]
            .find('\n')
            .map_or(self.source.len(), |newline| {
                end_at.saturating_sub(1) + newline
            });
        self.source[start..end.max(start)]
            .lines()
            .map(|line| line.trim_end().to_string())
            .filter(|line| !line.trim().is_empty())
            .collect()
    }
}

/// The manifest being written: a header, an optional project name, services.
#[derive(Debug, Default)]
struct Draft {
    /// Comment lines at the top.
    header: Vec<String>,
    project_name: Option<String>,
    /// Comment lines after `[project]` (top-level keys not imported).
    project_comments: Vec<String>,
    services: Vec<DraftService>,
}

#[derive(Debug, Default)]
struct DraftService {
    name: String,
    entries: Vec<DraftEntry>,
    /// Comments after the service's keys: what was not imported at all.
    trailing: Vec<String>,
}

#[derive(Debug)]
struct DraftEntry {
    key: String,
    value: TomlValue,
    /// Comment lines written just above the key.
    comments: Vec<String>,
}

impl DraftService {
    fn new(name: &str) -> Self {
        DraftService {
            name: name.to_string(),
            ..Default::default()
        }
    }

    fn set(&mut self, key: &str, value: TomlValue) {
        self.set_with(key, value, Vec::new());
    }

    fn set_with(&mut self, key: &str, value: TomlValue, comments: Vec<String>) {
        match self.entries.iter_mut().find(|entry| entry.key == key) {
            Some(entry) => {
                entry.value = value;
                entry.comments.extend(comments);
            }
            None => self.entries.push(DraftEntry {
                key: key.to_string(),
                value,
                comments,
            }),
        }
    }
}

/// Pushes a comment line and its newline. TOML allows no control character but tab in
/// a comment, and a comment may quote the source (a key, a whole line), so any other
/// is written as its escape, `\u{1}`.
fn push_comment(out: &mut String, line: &str) {
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out.push('\n');
}

impl Draft {
    fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            push_comment(&mut out, line);
        }
        if self.project_name.is_some() || !self.project_comments.is_empty() {
            out.push_str("\n[project]\n");
            if let Some(name) = &self.project_name {
                out.push_str(&format!("name = {}\n", TomlValue::string(name).to_text()));
            }
            for line in &self.project_comments {
                push_comment(&mut out, line);
            }
        }
        for service in &self.services {
            out.push('\n');
            out.push_str(&service_header(&service.name));
            out.push('\n');
            for entry in &service.entries {
                for line in &entry.comments {
                    push_comment(&mut out, line);
                }
                out.push_str(&format!(
                    "{} = {}\n",
                    toml_key(&entry.key),
                    entry.value.to_text()
                ));
            }
            for line in &service.trailing {
                push_comment(&mut out, line);
            }
        }
        out
    }
}
