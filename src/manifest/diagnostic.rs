//! What is wrong with a manifest, and how to show it.
//!
//! Owns [`Diagnostic`] (one problem: a message, the byte span it is about, an optional
//! label under the carets and an optional help line), [`ManifestError`] (everything
//! that kept a manifest from loading), the renderer that prints them the way rustc
//! does, and the "did you mean" suggestions. It knows nothing about the manifest's
//! keys: `raw` and `validate` decide what is wrong, this module only says it.
//!
//! The rendered form (without color) is pinned by the tests in `validate`:
//!
//! ```text
//! error: unknown key `comand` in service `users`
//!  --> fleet.toml:3:1
//!   |
//! 3 | comand = "x"
//!   | ^^^^^^
//!   |
//!   = help: did you mean `command`?
//!
//! error: could not load fleet.toml: 1 error
//! ```
//!
//! Diagnostics are separated by a blank line and followed by a summary line. Lines and
//! columns are 1-based and columns count chars; the carets cover the span on its first
//! line (at least one caret, so an empty span still points somewhere).

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a manifest, located by a byte range of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    /// Byte range in the manifest's source; may be empty (then it points before a char).
    pub span: Range<usize>,
    /// Short text printed after the carets.
    pub label: Option<String>,
    /// A hint printed below the snippet; may span several lines.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Range<usize>) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            label: None,
            help: None,
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds `did you mean `x`?` when there is a suggestion.
    pub fn with_suggestion(self, suggestion: Option<&str>) -> Self {
        match suggestion {
            Some(suggestion) => self.with_help(format!("did you mean `{suggestion}`?")),
            None => self,
        }
    }
}

/// Everything that kept a manifest from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// No `fleet.toml` in the start folder or any of its parents.
    NotFound { start: PathBuf },
    /// The manifest could not be read (missing, a folder, no permission, not UTF-8).
    Unreadable { path: PathBuf, reason: String },
    /// The manifest was read but is not valid: every problem found, in source order.
    Invalid {
        path: PathBuf,
        source: String,
        diagnostics: Vec<Diagnostic>,
    },
}

impl ManifestError {
    pub fn not_found(start: &Path) -> Self {
        ManifestError::NotFound {
            start: start.to_path_buf(),
        }
    }

    pub fn unreadable(path: &Path, err: &std::io::Error) -> Self {
        ManifestError::Unreadable {
            path: path.to_path_buf(),
            reason: err.to_string(),
        }
    }

    /// A manifest with problems. `path` is shown as given, so pass what the user typed
    /// (or what `find` returned).
    pub fn invalid(path: &Path, source: &str, mut diagnostics: Vec<Diagnostic>) -> Self {
        // Source order reads like a compiler's output; the sort is stable so that
        // problems reported at one span keep the order they were found in.
        diagnostics.sort_by_key(|diagnostic| diagnostic.span.start);
        ManifestError::Invalid {
            path: path.to_path_buf(),
            source: source.to_string(),
            diagnostics,
        }
    }

    /// The problems found in the manifest's text (empty for `NotFound`/`Unreadable`).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ManifestError::Invalid { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }

    /// Renders the error like rustc: `color` adds ANSI bold/red/blue for a terminal.
    /// The text has no trailing newline.
    pub fn render(&self, color: bool) -> String {
        let style = Style { color };
        match self {
            ManifestError::NotFound { start } => style.error_line(&format!(
                "no {} in {} or any parent folder",
                super::MANIFEST_FILE,
                start.display()
            )),
            ManifestError::Unreadable { path, reason } => {
                style.error_line(&format!("cannot read {}: {reason}", path.display()))
            }
            ManifestError::Invalid {
                path,
                source,
                diagnostics,
            } => {
                let mut out = String::new();
                for diagnostic in diagnostics {
                    out.push_str(&render_diagnostic(&style, path, source, diagnostic));
                    out.push_str("\n\n");
                }
                let count = diagnostics.len();
                let plural = if count == 1 { "" } else { "s" };
                out.push_str(&style.error_line(&format!(
                    "could not load {}: {count} error{plural}",
                    path.display()
                )));
                out
            }
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for ManifestError {}

/// ANSI styling, applied only when `color` is set.
struct Style {
    color: bool,
}

impl Style {
    const RESET: &'static str = "\x1b[0m";
    const BOLD: &'static str = "\x1b[1m";
    const RED: &'static str = "\x1b[1;31m";
    const BLUE: &'static str = "\x1b[1;34m";

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("{code}{text}{}", Self::RESET)
        } else {
            text.to_string()
        }
    }

    /// `error: message`, with `error` red and the message bold.
    fn error_line(&self, message: &str) -> String {
        format!(
            "{}{}",
            self.paint(Self::RED, "error"),
            self.paint(Self::BOLD, &format!(": {message}"))
        )
    }
}

/// Where a byte offset is: 1-based line and column (in chars), and the line's text.
pub(crate) struct Location<'a> {
    pub line: usize,
    pub column: usize,
    pub line_text: &'a str,
    /// Byte offset of the start of the line.
    pub line_start: usize,
}

/// Locates `offset` in `source`, clamping it into the text (an offset past the end
/// points just after the last char).
pub(crate) fn locate(source: &str, offset: usize) -> Location<'_> {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line_end = source[line_start..]
        .find('\n')
        .map_or(source.len(), |newline| line_start + newline);
    let line_text = source[line_start..line_end]
        .strip_suffix('\r')
        .unwrap_or(&source[line_start..line_end]);
    Location {
        line: before.matches('\n').count() + 1,
        column: source[line_start..offset].chars().count() + 1,
        line_text,
        line_start,
    }
}

/// Tabs are shown as this many spaces so that carets line up whatever the terminal's
/// tab stops are.
const TAB_WIDTH: usize = 4;

fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| if c == '\t' { TAB_WIDTH } else { 1 })
        .sum()
}

fn render_diagnostic(style: &Style, path: &Path, source: &str, diagnostic: &Diagnostic) -> String {
    let location = locate(source, diagnostic.span.start);
    let line_number = location.line.to_string();
    let gutter_width = line_number.len();
    let pad = " ".repeat(gutter_width);
    let bar = style.paint(Style::BLUE, "|");

    let start_in_line = diagnostic.span.start.min(source.len()) - location.line_start;
    let start_in_line = floor_char_boundary(location.line_text, start_in_line);
    let end_in_line = diagnostic
        .span
        .end
        .saturating_sub(location.line_start)
        .min(location.line_text.len());
    let end_in_line = floor_char_boundary(location.line_text, end_in_line.max(start_in_line));
    let indent = display_width(&location.line_text[..start_in_line]);
    let carets = display_width(&location.line_text[start_in_line..end_in_line]).max(1);

    let mut lines = vec![
        style.error_line(&diagnostic.message),
        format!(
            "{pad}{} {}:{}:{}",
            style.paint(Style::BLUE, "-->"),
            path.display(),
            location.line,
            location.column
        ),
        format!("{pad} {bar}"),
        format!(
            "{} {bar} {}",
            style.paint(Style::BLUE, &line_number),
            location.line_text.replace('\t', &" ".repeat(TAB_WIDTH))
        ),
    ];
    let mut marker = "^".repeat(carets);
    if let Some(label) = &diagnostic.label {
        marker.push(' ');
        marker.push_str(label);
    }
    lines.push(format!(
        "{pad} {bar} {}{}",
        " ".repeat(indent),
        style.paint(Style::RED, &marker)
    ));
    if let Some(help) = &diagnostic.help {
        lines.push(format!("{pad} {bar}"));
        let mut help_lines = help.lines();
        let first = help_lines.next().unwrap_or_default();
        lines.push(format!(
            "{pad} = {}: {first}",
            style.paint(Style::BOLD, "help")
        ));
        // Continuation lines line up with the text after `= help: `.
        let continuation = " ".repeat(gutter_width + " = help: ".len());
        for line in help_lines {
            lines.push(format!("{continuation}{line}"));
        }
    }
    let mut out = String::new();
    for (index, line) in lines.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        // Trailing spaces (an empty source line, an empty gutter) are noise in a
        // terminal and a trap in tests.
        let _ = write!(out, "{}", line.trim_end());
    }
    out
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The edit distance between `a` and `b` (optimal string alignment: insertions,
/// deletions, substitutions and swaps of two neighbours each cost one), in chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j] = distance between a[..i] and b[..j]; three rows are enough for swaps.
    let mut before_previous: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before_previous[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before_previous, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a likely typo: at most
/// one edit per three chars of `word` (and always at least one). Ties go to the
/// candidate listed first.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = edit_distance(word, candidate);
        if distance <= limit && best.is_none_or(|(best_distance, _)| distance < best_distance) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_substitutions_and_swaps() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("command", "command"), 0);
        assert_eq!(edit_distance("comand", "command"), 1);
        assert_eq!(edit_distance("commands", "command"), 1);
        assert_eq!(edit_distance("commond", "command"), 1);
        assert_eq!(edit_distance("comamnd", "command"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggest_only_close_candidates() {
        let keys = ["command", "cwd", "env", "env_file"];
        assert_eq!(suggest("comand", keys), Some("command"));
        assert_eq!(suggest("envfile", keys), Some("env_file"));
        assert_eq!(suggest("cdw", keys), Some("cwd"));
        assert_eq!(suggest("image", keys), None);
        assert_eq!(suggest("x", ["y"]), Some("y"));
    }

    #[test]
    fn locate_counts_lines_and_chars() {
        let source = "a = 1\nbé = \"x\"\r\nc";
        let location = locate(source, source.find("\"x\"").unwrap_or_default());
        assert_eq!(
            (location.line, location.column, location.line_text),
            (2, 6, "bé = \"x\"")
        );
        let end = locate(source, source.len() + 10);
        assert_eq!((end.line, end.column, end.line_text), (3, 2, "c"));
    }

    fn invalid(source: &str, diagnostics: Vec<Diagnostic>) -> String {
        ManifestError::invalid(Path::new("fleet.toml"), source, diagnostics).render(false)
    }

    #[test]
    fn render_puts_carets_under_the_span_with_label_and_help() {
        let source = "[services.users]\ncomand = \"x\"\n";
        let diagnostic = Diagnostic::new("unknown key `comand` in service `users`", 17..23)
            .with_label("here")
            .with_help("did you mean `command`?");
        assert_eq!(
            invalid(source, vec![diagnostic]),
            r#"error: unknown key `comand` in service `users`
 --> fleet.toml:2:1
  |
2 | comand = "x"
  | ^^^^^^ here
  |
  = help: did you mean `command`?

error: could not load fleet.toml: 1 error"#
        );
    }

    #[test]
    fn render_widens_the_gutter_for_long_line_numbers_and_indents_help_lines() {
        let source = format!("{}x = 1\n", "\n".repeat(11));
        let diagnostic = Diagnostic::new("bad", 11..12).with_help("first\nsecond");
        assert_eq!(
            invalid(&source, vec![diagnostic]),
            "error: bad
  --> fleet.toml:12:1
   |
12 | x = 1
   | ^
   |
   = help: first
           second

error: could not load fleet.toml: 1 error"
        );
    }

    #[test]
    fn render_an_empty_span_at_the_end_of_a_line_shows_one_caret() {
        let source = "a = [1,\n";
        assert_eq!(
            invalid(source, vec![Diagnostic::new("unclosed array", 7..7)]),
            "error: unclosed array
 --> fleet.toml:1:8
  |
1 | a = [1,
  |        ^

error: could not load fleet.toml: 1 error"
        );
    }

    #[test]
    fn render_expands_tabs_so_carets_line_up() {
        let source = "\tx = 1";
        assert_eq!(
            invalid(source, vec![Diagnostic::new("bad", 1..2)]),
            "error: bad
 --> fleet.toml:1:2
  |
1 |     x = 1
  |     ^

error: could not load fleet.toml: 1 error"
        );
    }

    #[test]
    fn render_with_color_uses_ansi_codes() {
        let rendered = ManifestError::invalid(
            Path::new("fleet.toml"),
            "x",
            vec![Diagnostic::new("bad", 0..1)],
        )
        .render(true);
        assert!(rendered.starts_with("\x1b[1;31merror\x1b[0m\x1b[1m: bad\x1b[0m\n"));
        assert!(rendered.contains("\x1b[1;34m-->\x1b[0m"));
        assert!(rendered.contains("\x1b[1;31m^\x1b[0m"));
    }

    #[test]
    fn render_not_found_and_unreadable() {
        assert_eq!(
            ManifestError::not_found(Path::new("/srv/app")).render(false),
            "error: no fleet.toml in /srv/app or any parent folder"
        );
        let err = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let error = ManifestError::unreadable(Path::new("fleet.toml"), &err);
        assert_eq!(
            error.to_string(),
            format!("error: cannot read fleet.toml: {err}")
        );
    }
}
