//! Variable interpolation as docker compose does it: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `${VAR:+other}`,
//! `${VAR+other}` and `$$` for a literal `$`, with values from the environment and the
//! `.env` file in the manifest's (or compose file's) folder; the environment wins.
//!
//! Owns the syntax and its errors, and the walk that interpolates every string value of
//! a parsed `fleet.toml`. It is used by the manifest (`validate`, before any value is
//! read) and by `fleet import` for compose files. It must not decide what an unset
//! variable means to its caller: [`interpolate`] reports the unset ones it replaced with
//! nothing, and the caller makes them warnings (compose) or errors (fleet.toml).
//!
//! The rules follow compose: a name is `[A-Za-z_][A-Za-z0-9_]*`; a `$` followed by
//! anything else (`$1`, `$(`, `$ `) stays as written; a `${` that is not a valid
//! expression is an error; a default, message or alternative may itself hold
//! `${...}` expressions.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use super::diagnostic::Diagnostic;
use super::raw::{Kind, Table, Value};

/// The variables an interpolation reads: the process environment over a `.env` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    values: BTreeMap<String, String>,
}

/// Why the `.env` beside a manifest could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DotenvError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("invalid line {line} in {path}: expected `KEY=VALUE`")]
    BadLine { path: String, line: usize },
}

/// The name of the file whose variables interpolation reads, in the manifest's folder.
pub const DOTENV: &str = ".env";

impl Variables {
    /// Variables from `pairs` only (tests, and callers that assembled them).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Variables {
        Variables {
            values: pairs
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        }
    }

    /// The process environment over `folder/.env` (a missing `.env` is no error).
    pub fn for_folder(folder: &Path) -> Result<Variables, DotenvError> {
        let mut variables = Variables::read_dotenv(folder)?;
        for (key, value) in std::env::vars_os() {
            if let (Ok(key), Ok(value)) = (key.into_string(), value.into_string()) {
                variables.values.insert(key, value);
            }
        }
        Ok(variables)
    }

    /// Only `folder/.env` (empty when there is none).
    pub fn read_dotenv(folder: &Path) -> Result<Variables, DotenvError> {
        let path = folder.join(DOTENV);
        let text = match super::read_text_file(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Variables::default());
            }
            Err(err) => {
                return Err(DotenvError::Unreadable {
                    path: path.display().to_string(),
                    reason: err.to_string(),
                });
            }
        };
        let mut values = BTreeMap::new();
        for entry in super::values::env_file_entries(&text) {
            match entry {
                Ok((key, value)) => {
                    values.insert(key, value);
                }
                Err(line) => {
                    return Err(DotenvError::BadLine {
                        path: path.display().to_string(),
                        line,
                    });
                }
            }
        }
        Ok(Variables { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

/// A string after interpolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolated {
    pub text: String,
    /// Variables that were unset and had no default, replaced by nothing; each with the
    /// byte range of its expression in the input.
    pub unset: Vec<(String, Range<usize>)>,
}

/// An expression that cannot be evaluated: malformed, or a required variable unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    pub message: String,
    /// Byte range of the offending expression in the input.
    pub range: Range<usize>,
}

/// Interpolates `text`.
pub fn interpolate(text: &str, variables: &Variables) -> Result<Interpolated, InterpolationError> {
    let mut parser = Parser {
        text,
        position: 0,
        variables,
        unset: Vec::new(),
        depth: 0,
    };
    let out = parser.template(false)?;
    Ok(Interpolated {
        text: out,
        unset: parser.unset,
    })
}

/// `$` doubled, so that interpolation gives `text` back.
pub fn escape(text: &str) -> String {
    text.replace('$', "$$")
}

/// How deep `${A:-${B:-...}}` may nest. Each level is a level of recursion in the
/// parser, so without a bound a long enough value overflows the stack; no real default
/// nests more than a few levels.
pub const MAX_NESTING: usize = 64;

struct Parser<'a> {
    text: &'a str,
    position: usize,
    variables: &'a Variables,
    unset: Vec<(String, Range<usize>)>,
    /// Expressions open around the current position.
    depth: usize,
}

impl Parser<'_> {
    /// Reads literal text and expressions up to the end, or (`nested`) up to the `}`
    /// that closes the expression this template is the default of (left unread).
    fn template(&mut self, nested: bool) -> Result<String, InterpolationError> {
        let mut out = String::new();
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                '$' => out.push_str(&self.dollar()?),
                '}' if nested && depth == 0 => return Ok(out),
                _ => {
                    // Plain braces inside a default must pair up before the closing one.
                    if nested && c == '{' {
                        depth += 1;
                    } else if nested && c == '}' {
                        depth -= 1;
                    }
                    out.push(c);
                    self.position += c.len_utf8();
                }
            }
        }
        Ok(out)
    }

    fn peek(&self) -> Option<char> {
        self.text[self.position..].chars().next()
    }

    fn name_at(&self, from: usize) -> &str {
        let rest = &self.text[from..];
        let mut end = 0;
        for (index, c) in rest.char_indices() {
            let valid = c == '_' || c.is_ascii_alphabetic() || (index > 0 && c.is_ascii_digit());
            if !valid {
                break;
            }
            end = index + c.len_utf8();
        }
        &rest[..end]
    }

    /// At a `$`: an escape, a plain name, a braced expression, or a literal `$`.
    fn dollar(&mut self) -> Result<String, InterpolationError> {
        let start = self.position;
        self.position += 1;
        match self.peek() {
            Some('$') => {
                self.position += 1;
                Ok("$".to_string())
            }
            Some('{') => self.braced(start),
            _ => {
                let name = self.name_at(self.position).to_string();
                if name.is_empty() {
                    return Ok("$".to_string());
                }
                self.position += name.len();
                Ok(self.value_or_unset(&name, start..self.position))
            }
        }
    }

    fn value_or_unset(&mut self, name: &str, range: Range<usize>) -> String {
        match self.variables.get(name) {
            Some(value) => value.to_string(),
            None => {
                self.unset.push((name.to_string(), range));
                String::new()
            }
        }
    }

    /// `${...}`, with `self.position` at the `{` and `start` at the `$`.
    fn braced(&mut self, start: usize) -> Result<String, InterpolationError> {
        self.position += 1;
        let name = self.name_at(self.position).to_string();
        let invalid = |parser: &Parser<'_>| {
            let end = parser.text[start..]
                .find('}')
                .map_or(parser.text.len(), |close| start + close + 1);
            InterpolationError {
                message: format!(
                    "invalid interpolation `{}`",
                    &parser.text[start..end.min(parser.text.len())]
                ),
                range: start..end,
            }
        };
        if name.is_empty() {
            return Err(invalid(self));
        }
        self.position += name.len();
        let rest = &self.text[self.position..];
        let operator = ["}", ":-", "-", ":?", "?", ":+", "+"]
            .into_iter()
            .find(|operator| rest.starts_with(operator));
        let Some(operator) = operator else {
            return Err(invalid(self));
        };
        self.position += operator.len();
        if operator == "}" {
            return Ok(self.value_or_unset(&name, start..self.position));
        }
        if self.depth == MAX_NESTING {
            return Err(InterpolationError {
                message: format!(
                    "interpolation nested more than {MAX_NESTING} levels deep: `{}`",
                    &self.text[start..self.position]
                ),
                range: start..self.position,
            });
        }
        // The argument is evaluated only when it is used (as a shell does), but it is
        // always parsed, so a malformed one is an error either way.
        let unset_before = self.unset.len();
        self.depth += 1;
        let argument = self.template(true);
        self.depth -= 1;
        let argument = argument?;
        if self.peek() != Some('}') {
            return Err(InterpolationError {
                message: format!(
                    "unclosed interpolation `{}`: a `}}` is missing",
                    &self.text[start..]
                ),
                range: start..self.text.len(),
            });
        }
        self.position += 1;
        let range = start..self.position;
        let value = self.variables.get(&name);
        let empty = value.is_none_or(str::is_empty);
        let argument_used = match operator {
            ":-" | ":?" => empty,
            "-" | "?" => value.is_none(),
            ":+" => !empty,
            _ => value.is_some(),
        };
        if !argument_used {
            self.unset.truncate(unset_before);
        }
        match operator {
            ":-" | "-" if argument_used => Ok(argument),
            ":?" | "?" if argument_used => {
                let condition = if operator == ":?" && value.is_some() {
                    "is empty"
                } else {
                    "is not set"
                };
                let message = if argument.trim().is_empty() {
                    format!("required variable `{name}` {condition}")
                } else {
                    format!("required variable `{name}` {condition}: {argument}")
                };
                Err(InterpolationError { message, range })
            }
            ":+" | "+" if argument_used => Ok(argument),
            ":+" | "+" => Ok(String::new()),
            _ => Ok(value.unwrap_or_default().to_string()),
        }
    }
}

/// Interpolates every string value in `table` (keys stay as written). Each problem is a
/// diagnostic at the string, narrowed to the expression when the string is written
/// without escapes so that the offset in the file is known.
pub(crate) fn interpolate_table(
    table: &mut Table,
    source: &str,
    variables: &Variables,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for entry in &mut table.entries {
        interpolate_value(&mut entry.value, source, variables, diagnostics);
    }
}

fn interpolate_value(
    value: &mut Value,
    source: &str,
    variables: &Variables,
    diagnostics: &mut Vec<Diagnostic>,
) {
    match &mut value.kind {
        Kind::String(text) => {
            if !text.contains('$') {
                return;
            }
            let span_of = |range: &Range<usize>| {
                locate_in_literal(source, &value.span, text, range).unwrap_or(value.span.clone())
            };
            match interpolate(text, variables) {
                Ok(done) => {
                    for (name, range) in &done.unset {
                        diagnostics.push(
                            Diagnostic::new(format!("variable `{name}` is not set"), span_of(range))
                                .with_help(format!(
                                    "set it in the environment or in {DOTENV}, give a default (`${{{name}:-default}}`), \
                                     or write `$${name}` to leave `${name}` to the service's shell"
                                )),
                        );
                    }
                    *text = done.text;
                }
                Err(err) => {
                    let diagnostic = Diagnostic::new(err.message, span_of(&err.range));
                    let diagnostic = if diagnostic.message.starts_with("required") {
                        diagnostic
                    } else {
                        diagnostic.with_help("write `$$` for a literal `$`")
                    };
                    diagnostics.push(diagnostic);
                }
            }
        }
        Kind::Array(items) => {
            for item in items {
                interpolate_value(item, source, variables, diagnostics);
            }
        }
        Kind::Table(table) => interpolate_table(table, source, variables, diagnostics),
        _ => {}
    }
}

/// Where `range` of a string's value lies in the file, when the string is written as
/// its value between quotes (no escapes, no line continuations).
fn locate_in_literal(
    source: &str,
    span: &Range<usize>,
    text: &str,
    range: &Range<usize>,
) -> Option<Range<usize>> {
    let written = source.get(span.clone())?;
    let quote_len = ["\"\"\"", "'''", "\"", "'"]
        .into_iter()
        .find(|quote| written.starts_with(quote) && written.ends_with(quote))?
        .len();
    let inner = written.get(quote_len..written.len().checked_sub(quote_len)?)?;
    (inner == text)
        .then(|| span.start + quote_len + range.start..span.start + quote_len + range.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        Variables::from_pairs([("NAME", "web"), ("EMPTY", ""), ("PORT", "8080")])
    }

    fn run(text: &str) -> Result<(String, Vec<String>), String> {
        interpolate(text, &vars())
            .map(|done| {
                (
                    done.text,
                    done.unset.into_iter().map(|(name, _)| name).collect(),
                )
            })
            .map_err(|err| format!("{} at {:?}", err.message, err.range))
    }

    fn ok(text: &str) -> String {
        match run(text) {
            Ok((out, unset)) if unset.is_empty() => out,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn plain_and_braced_names() {
        assert_eq!(ok("$NAME:$PORT"), "web:8080");
        assert_eq!(ok("${NAME}-${PORT}"), "web-8080");
        assert_eq!(ok("pre${NAME}post"), "prewebpost");
        assert_eq!(ok("$NAME.x"), "web.x");
        assert_eq!(ok("no variables"), "no variables");
    }

    #[test]
    fn escapes_and_lone_dollars_stay() {
        assert_eq!(ok("$$NAME"), "$NAME");
        assert_eq!(ok("cost: 5$"), "cost: 5$");
        assert_eq!(ok("$1 $( $ x"), "$1 $( $ x");
        assert_eq!(ok("$$$$"), "$$");
        assert_eq!(escape("a$b$$"), "a$$b$$$$");
        assert_eq!(ok(&escape("echo $HOME ${X:?y}")), "echo $HOME ${X:?y}");
    }

    #[test]
    fn defaults_with_and_without_colon() {
        assert_eq!(ok("${MISSING:-d}"), "d");
        assert_eq!(ok("${MISSING-d}"), "d");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${EMPTY-d}"), "");
        assert_eq!(ok("${NAME:-d}"), "web");
        assert_eq!(ok("${MISSING:-}"), "");
        assert_eq!(ok("${MISSING:-a b:c}"), "a b:c");
        assert_eq!(ok("${MISSING:-${NAME}}"), "web");
        assert_eq!(ok("${MISSING:-${ALSO:-x}y}"), "xy");
        assert_eq!(ok("${MISSING:-{a}}"), "{a}");
    }

    #[test]
    fn alternatives() {
        assert_eq!(ok("${NAME:+set}"), "set");
        assert_eq!(ok("${EMPTY:+set}"), "");
        assert_eq!(ok("${EMPTY+set}"), "set");
        assert_eq!(ok("${MISSING+set}"), "");
    }

    /// Found by hand while writing the `interpolate` fuzz target (libFuzzer's inputs are
    /// too short to nest this deep): each nested default is a level of recursion, so a
    /// 500 KB value of `${A:-${A:-...` overflowed the stack and aborted `fleet check`.
    #[test]
    fn deeply_nested_defaults_are_an_error_not_a_stack_overflow() {
        let nested = |depth: usize| format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
        assert_eq!(ok(&nested(MAX_NESTING)), "x");
        let err = interpolate(&nested(100_000), &vars()).expect_err("too deep");
        assert!(err.message.contains("nested"), "{}", err.message);
    }

    #[test]
    fn unset_variables_are_reported_with_their_place() {
        let done = interpolate("a $MISSING b ${OTHER}", &vars()).expect("valid");
        assert_eq!(done.text, "a  b ");
        assert_eq!(
            done.unset,
            vec![
                ("MISSING".to_string(), 2..10),
                ("OTHER".to_string(), 13..21)
            ]
        );
        // An unused default's unset variables are not reported.
        assert_eq!(run("${NAME:-$MISSING}"), Ok(("web".into(), vec![])));
        assert_eq!(
            run("${MISSING:-$ALSO}"),
            Ok((String::new(), vec!["ALSO".into()]))
        );
    }

    #[test]
    fn required_variables() {
        assert_eq!(ok("${NAME:?need it}"), "web");
        assert_eq!(ok("${EMPTY?need it}"), "");
        assert_eq!(
            run("x ${MISSING:?set MISSING to the database URL}"),
            Err(
                "required variable `MISSING` is not set: set MISSING to the database URL at 2..45"
                    .into()
            )
        );
        assert_eq!(
            run("${EMPTY:?}"),
            Err("required variable `EMPTY` is empty at 0..10".into())
        );
        assert_eq!(
            run("${MISSING?}"),
            Err("required variable `MISSING` is not set at 0..11".into())
        );
    }

    #[test]
    fn malformed_expressions_are_errors() {
        assert_eq!(
            run("a ${} b"),
            Err("invalid interpolation `${}` at 2..5".into())
        );
        assert_eq!(
            run("${1X}"),
            Err("invalid interpolation `${1X}` at 0..5".into())
        );
        assert_eq!(
            run("${NAME!x}"),
            Err("invalid interpolation `${NAME!x}` at 0..9".into())
        );
        assert_eq!(
            run("${NAME:-x"),
            Err("unclosed interpolation `${NAME:-x`: a `}` is missing at 0..9".into())
        );
        assert_eq!(
            run("${NAME"),
            Err("invalid interpolation `${NAME` at 0..6".into())
        );
    }

    #[test]
    fn non_ascii_text_around_expressions() {
        assert_eq!(ok("é$NAME€${PORT}ü"), "éweb€8080ü");
    }

    fn check_with(source: &str, variables: &Variables, expected: &str) {
        let expected = expected.strip_prefix('\n').unwrap_or(expected);
        match crate::manifest::parse_with_variables(Path::new("fleet.toml"), source, variables) {
            Ok(manifest) => panic!("expected errors, got {manifest:#?}"),
            Err(err) => {
                let actual = err.render(false);
                assert!(
                    actual == expected,
                    "rendered:\n{actual}\n\nexpected:\n{expected}\n"
                );
            }
        }
    }

    #[test]
    fn fleet_toml_strings_are_interpolated_and_keys_are_not() {
        let source = r#"[project]
name = "${PROJECT:-demo}"
[services.web]
command = ["serve", "--port", "${PORT}1", "$$HOME"]
env = { "${KEY}" = "${NAME}", "N" = 5 }
"#;
        let manifest =
            crate::manifest::parse_with_variables(Path::new("fleet.toml"), source, &vars())
                .expect("valid");
        assert_eq!(manifest.project.name, "demo");
        let web = &manifest.services[0];
        assert_eq!(web.env.get("${KEY}").map(String::as_str), Some("web"));
        assert_eq!(
            web.kind,
            crate::manifest::ServiceKind::Process(crate::manifest::ProcessSpec {
                command: crate::manifest::CommandLine::Argv(vec![
                    "serve".into(),
                    "--port".into(),
                    "80801".into(),
                    "$HOME".into()
                ]),
                cwd: manifest.root.clone(),
                build: None,
            })
        );
    }

    #[test]
    fn fleet_toml_interpolation_errors_point_into_the_string() {
        let variables = Variables::from_pairs([("SET", "1")]);
        check_with(
            "[services.web]\ncommand = \"serve --port $PORT\"\nenv = { A = \"${DB:?needs a database}\", B = 'x${' }\nbuild = \"a\\t${B}\"\n",
            &variables,
            r#"
error: variable `PORT` is not set
 --> fleet.toml:2:25
  |
2 | command = "serve --port $PORT"
  |                         ^^^^^
  |
  = help: set it in the environment or in .env, give a default (`${PORT:-default}`), or write `$$PORT` to leave `$PORT` to the service's shell

error: required variable `DB` is not set: needs a database
 --> fleet.toml:3:14
  |
3 | env = { A = "${DB:?needs a database}", B = 'x${' }
  |              ^^^^^^^^^^^^^^^^^^^^^^^

error: invalid interpolation `${`
 --> fleet.toml:3:46
  |
3 | env = { A = "${DB:?needs a database}", B = 'x${' }
  |                                              ^^
  |
  = help: write `$$` for a literal `$`

error: variable `B` is not set
 --> fleet.toml:4:9
  |
4 | build = "a\t${B}"
  |         ^^^^^^^^^
  |
  = help: set it in the environment or in .env, give a default (`${B:-default}`), or write `$$B` to leave `$B` to the service's shell

error: could not load fleet.toml: 4 errors"#,
        );
    }

    #[test]
    fn a_literal_string_locates_its_expressions() {
        let source = "x = \"a ${B}\"";
        let span = 4..12;
        assert_eq!(
            locate_in_literal(source, &span, "a ${B}", &(2..6)),
            Some(7..11)
        );
        let escaped = "x = \"a\\t${B}\"";
        assert_eq!(
            locate_in_literal(escaped, &(4..13), "a\t${B}", &(2..6)),
            None
        );
    }
}
