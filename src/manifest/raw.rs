//! The manifest's TOML as a tree that remembers where everything is.
//!
//! Owns turning the text into [`Table`]s and [`Value`]s whose keys and values carry
//! their byte spans, in the order they appear in the file, plus the small readers
//! `validate` uses to ask for "a string here" or "only these keys in this table" while
//! collecting a [`Diagnostic`] for every mismatch instead of stopping at the first.
//! It knows the shape of TOML, not the meaning of fleet's keys: which keys exist and
//! what their values mean is `validate`'s business.
//!
//! Why not serde with `deny_unknown_fields`: serde stops at the first error, and fleet
//! reports every problem in the file at once.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::diagnostic::{suggest, Diagnostic};

pub(crate) type Span = Range<usize>;

/// A TOML value and the span of its text (for a `[header]` table: the header; for a
/// table only implied by a dotted key: that key).
#[derive(Debug, Clone)]
pub(crate) struct Value {
    pub kind: Kind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    String(String),
    /// `None` when the integer does not fit an `i64`.
    Integer(Option<i64>),
    Float,
    Boolean(bool),
    Datetime,
    Array(Vec<Value>),
    Table(Table),
}

/// A table's entries in source order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Value,
}

/// Parses TOML text into a table. A syntax error is returned alone: after the first
/// one, the parser's recovery guesses, and the errors that follow are more often
/// artefacts of that guess than mistakes in the file.
pub(crate) fn parse(source: &str) -> Result<Table, Diagnostic> {
    let (document, errors) = DeTable::parse_recoverable(source);
    if let Some(first) = errors
        .iter()
        .min_by_key(|error| error.span().map_or(0, |span| span.start))
    {
        let span = first.span().unwrap_or(0..0);
        return Err(Diagnostic::new(first.message(), span));
    }
    Ok(convert_table(document.get_ref()))
}

fn convert_table(table: &DeTable<'_>) -> Table {
    let mut entries: Vec<Entry> = table
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            key_span: key.span(),
            value: convert_value(value.get_ref(), value.span()),
        })
        .collect();
    // `toml` keeps tables sorted by key; fleet wants declaration order (services start
    // and show in the order written).
    entries.sort_by_key(|entry| entry.key_span.start);
    Table { entries }
}

fn convert_value(value: &DeValue<'_>, span: Span) -> Value {
    let kind = match value {
        DeValue::String(text) => Kind::String(text.to_string()),
        DeValue::Integer(integer) => {
            Kind::Integer(i64::from_str_radix(integer.as_str(), integer.radix()).ok())
        }
        DeValue::Float(_) => Kind::Float,
        DeValue::Boolean(boolean) => Kind::Boolean(*boolean),
        DeValue::Datetime(_) => Kind::Datetime,
        DeValue::Array(array) => Kind::Array(
            array
                .iter()
                .map(|item| convert_value(item.get_ref(), item.span()))
                .collect(),
        ),
        DeValue::Table(table) => Kind::Table(convert_table(table)),
    };
    Value { kind, span }
}

impl Table {
    pub(crate) fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.key == key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.entry(key).map(|entry| &entry.value)
    }

    /// Reports every key not in `known`: `unknown key `x`{context}`, with a "did you
    /// mean" when one is close, else the list of keys when it is short enough to read.
    pub(crate) fn check_keys(
        &self,
        known: &[&str],
        context: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        /// Up to this many keys are listed in the help when nothing is close.
        const LISTED_KEYS: usize = 10;
        for entry in &self.entries {
            if known.contains(&entry.key.as_str()) {
                continue;
            }
            let diagnostic = Diagnostic::new(
                format!("unknown key `{}`{context}", entry.key),
                entry.key_span.clone(),
            );
            let diagnostic = match suggest(&entry.key, known.iter().copied()) {
                Some(suggestion) => diagnostic.with_suggestion(Some(suggestion)),
                None if known.len() <= LISTED_KEYS => {
                    diagnostic.with_help(format!("expected {}", one_of(known)))
                }
                None => diagnostic,
            };
            diagnostics.push(diagnostic);
        }
    }
}

/// "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
pub(crate) fn one_of(options: &[&str]) -> String {
    let quoted: Vec<String> = options.iter().map(|option| format!("`{option}`")).collect();
    match quoted.as_slice() {
        [] => "nothing".to_string(),
        [only] => only.clone(),
        [first, second] => format!("{first} or {second}"),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

impl Value {
    pub(crate) fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::String(_) => "string",
            Kind::Integer(_) => "integer",
            Kind::Float => "float",
            Kind::Boolean(_) => "boolean",
            Kind::Datetime => "datetime",
            Kind::Array(_) => "array",
            Kind::Table(_) => "table",
        }
    }

    /// `expected {what}, found {type}` at this value.
    pub(crate) fn expected(&self, what: &str) -> Diagnostic {
        Diagnostic::new(
            format!("expected {what}, found {}", self.type_name()),
            self.span.clone(),
        )
    }

    pub(crate) fn as_table(&self) -> Option<&Table> {
        match &self.kind {
            Kind::Table(table) => Some(table),
            _ => None,
        }
    }

    pub(crate) fn is_table(&self) -> bool {
        self.as_table().is_some()
    }

    pub(crate) fn string(&self, diagnostics: &mut Vec<Diagnostic>) -> Option<&str> {
        match &self.kind {
            Kind::String(text) => Some(text),
            _ => {
                diagnostics.push(self.expected("a string"));
                None
            }
        }
    }

    pub(crate) fn integer(&self, diagnostics: &mut Vec<Diagnostic>) -> Option<i64> {
        match &self.kind {
            Kind::Integer(Some(integer)) => Some(*integer),
            Kind::Integer(None) => {
                diagnostics.push(Diagnostic::new("integer is too large", self.span.clone()));
                None
            }
            _ => {
                diagnostics.push(self.expected("an integer"));
                None
            }
        }
    }

    pub(crate) fn boolean(&self, diagnostics: &mut Vec<Diagnostic>) -> Option<bool> {
        match &self.kind {
            Kind::Boolean(boolean) => Some(*boolean),
            _ => {
                diagnostics.push(self.expected("`true` or `false`"));
                None
            }
        }
    }

    pub(crate) fn table(&self, diagnostics: &mut Vec<Diagnostic>) -> Option<&Table> {
        match &self.kind {
            Kind::Table(table) => Some(table),
            _ => {
                diagnostics.push(self.expected("a table"));
                None
            }
        }
    }

    pub(crate) fn array(&self, what: &str, diagnostics: &mut Vec<Diagnostic>) -> Option<&[Value]> {
        match &self.kind {
            Kind::Array(items) => Some(items),
            _ => {
                diagnostics.push(self.expected(what));
                None
            }
        }
    }

    /// An array of strings, each with its span; elements of another type are reported
    /// and skipped.
    pub(crate) fn strings(&self, diagnostics: &mut Vec<Diagnostic>) -> Option<Vec<(&str, Span)>> {
        let items = self.array("an array of strings", diagnostics)?;
        Some(
            items
                .iter()
                .filter_map(|item| Some((item.string(diagnostics)?, item.span.clone())))
                .collect(),
        )
    }

    /// A string, integer or boolean, as text: what an environment variable or a build
    /// argument can be written as.
    pub(crate) fn scalar_text(&self, diagnostics: &mut Vec<Diagnostic>) -> Option<String> {
        match &self.kind {
            Kind::String(text) => Some(text.clone()),
            Kind::Integer(Some(integer)) => Some(integer.to_string()),
            Kind::Boolean(boolean) => Some(boolean.to_string()),
            Kind::Integer(None) => self.integer(diagnostics).map(|integer| integer.to_string()),
            _ => {
                diagnostics.push(self.expected("a string, integer or boolean"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_declaration_order_and_spans() {
        let source = "[services.zeta]\ncommand = \"z\"\n[services.alpha]\ncommand = \"a\"\n";
        let document = parse(source).expect("valid TOML");
        let services = document
            .get("services")
            .and_then(Value::as_table)
            .expect("services table");
        let names: Vec<&str> = services
            .entries
            .iter()
            .map(|entry| entry.key.as_str())
            .collect();
        assert_eq!(names, ["zeta", "alpha"]);
        let alpha = &services.entries[1];
        assert_eq!(&source[alpha.key_span.clone()], "alpha");
        assert_eq!(&source[alpha.value.span.clone()], "[services.alpha]");
    }

    #[test]
    fn parse_reports_the_first_syntax_error_in_the_file() {
        let source = "[services.users]\ncommand = \"x\n[x\n";
        let error = parse(source).expect_err("invalid TOML");
        assert_eq!(error.message, "invalid basic string, expected `\"`");
        assert_eq!(error.span, 29..29);
    }

    #[test]
    fn integers_in_any_radix_and_out_of_range() {
        let document = parse("a = 0x1F\nb = -5\nc = 99999999999999999999\n").expect("valid TOML");
        let mut diagnostics = Vec::new();
        let read = |key: &str, diagnostics: &mut Vec<Diagnostic>| {
            document
                .get(key)
                .and_then(|value| value.integer(diagnostics))
        };
        assert_eq!(read("a", &mut diagnostics), Some(31));
        assert_eq!(read("b", &mut diagnostics), Some(-5));
        assert_eq!(read("c", &mut diagnostics), None);
        assert_eq!(diagnostics.len(), 1);
    }

    #[test]
    fn one_of_reads_naturally() {
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b"]), "`a` or `b`");
        assert_eq!(one_of(&["a", "b", "c"]), "one of `a`, `b`, `c`");
    }
}
