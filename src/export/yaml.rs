//! Writing YAML: a small tree ([`Yaml`]) and its block-style text, and reading that text
//! back to check it says what the tree says.
//!
//! Owns the spelling of values: a string is written plain only when no YAML reader can
//! take it for anything else (a number, a boolean in YAML 1.1 or 1.2, null, a key, a
//! comment), else double-quoted with JSON's escapes, which YAML's double-quoted style
//! shares. It knows nothing of compose files or Kubernetes.
//!
//! Why not a YAML serializer crate: the trees are small and ordered by hand (the order
//! of keys is part of what a person reads), and the one question that matters, "is
//! this string read back as this string", is answered here in one function and
//! checked by [`round_trip`] on every document fleet writes.

use std::fmt::Write as _;

use crate::import::yaml::{self, Node, NodeKind};

/// A YAML value to write. Mappings keep their keys in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Yaml {
    Str(String),
    Int(i64),
    Bool(bool),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    pub(crate) fn str(text: impl Into<String>) -> Yaml {
        Yaml::Str(text.into())
    }

    pub(crate) fn strs<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Yaml {
        Yaml::Seq(items.into_iter().map(Yaml::str).collect())
    }

    pub(crate) fn int(number: impl Into<i64>) -> Yaml {
        Yaml::Int(number.into())
    }

    /// An empty mapping, to be filled with [`Yaml::push`].
    pub(crate) fn map() -> Yaml {
        Yaml::Map(Vec::new())
    }

    /// Adds `key: value` to a mapping (a no-op on anything else).
    pub(crate) fn push(&mut self, key: &str, value: Yaml) {
        if let Yaml::Map(entries) = self {
            entries.push((key.to_string(), value));
        }
    }

    /// The value of `key` in a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Yaml::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The document as block-style YAML text, ending in a newline.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        match self {
            Yaml::Map(entries) if !entries.is_empty() => write_map(entries, 0, &mut out),
            Yaml::Seq(items) if !items.is_empty() => write_seq(items, 0, &mut out),
            scalar => {
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
        out
    }
}

fn write_map(entries: &[(String, Yaml)], indent: usize, out: &mut String) {
    for (key, value) in entries {
        let _ = write!(out, "{:indent$}{}:", "", scalar_text(key));
        write_value_after_key(value, indent, out);
    }
}

/// The value of a key: a scalar or an empty collection on the key's line, else the
/// collection below it, indented.
fn write_value_after_key(value: &Yaml, indent: usize, out: &mut String) {
    match value {
        Yaml::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            write_map(entries, indent + 2, out);
        }
        Yaml::Seq(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(items, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

fn write_seq(items: &[Yaml], indent: usize, out: &mut String) {
    for item in items {
        let _ = write!(out, "{:indent$}-", "");
        match item {
            Yaml::Map(entries) if !entries.is_empty() => {
                // The first key shares the dash's line; the rest line up with it.
                let mut first = true;
                for (key, value) in entries {
                    if first {
                        let _ = write!(out, " {}:", scalar_text(key));
                        first = false;
                    } else {
                        let _ = write!(
                            out,
                            "{:width$}{}:",
                            "",
                            scalar_text(key),
                            width = indent + 2
                        );
                    }
                    write_value_after_key(value, indent + 2, out);
                }
            }
            Yaml::Seq(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(inner, indent + 2, out);
            }
            scalar => {
                out.push(' ');
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

/// A scalar or an empty collection, on one line.
fn inline(value: &Yaml) -> String {
    match value {
        Yaml::Str(text) => scalar_text(text),
        Yaml::Int(number) => number.to_string(),
        Yaml::Bool(flag) => flag.to_string(),
        Yaml::Seq(_) => "[]".to_string(),
        Yaml::Map(_) => "{}".to_string(),
    }
}

/// Words a YAML 1.1 reader (Docker's, Kubernetes') takes as booleans or null.
const RESERVED_WORDS: &[&str] = &[
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
];

/// `text` as a YAML scalar that reads back as this same string.
fn scalar_text(text: &str) -> String {
    let plain = text
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == '/')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !RESERVED_WORDS.contains(&text.to_ascii_lowercase().as_str());
    if plain {
        text.to_string()
    } else {
        // JSON's string syntax is YAML's double-quoted style.
        serde_json::Value::String(text.to_string()).to_string()
    }
}

/// Reads `text` back and checks that it is exactly `expected`; what differs otherwise.
pub(crate) fn round_trip(text: &str, expected: &Yaml) -> Result<(), String> {
    let node = yaml::parse(text)
        .map_err(|err| format!("the YAML written does not parse: {}", err.message))?
        .ok_or_else(|| "the YAML written is empty".to_string())?;
    compare(&node, expected, "")
}

fn compare(node: &Node, expected: &Yaml, at: &str) -> Result<(), String> {
    let mismatch = || {
        Err(format!(
            "`{at}` reads back as something else than was meant"
        ))
    };
    match (&node.kind, expected) {
        (NodeKind::Scalar { text, plain }, Yaml::Str(want)) => {
            // A plain scalar must not be one a reader types as anything but a string.
            if text == want && (!plain || scalar_text(want) == *want) {
                Ok(())
            } else {
                mismatch()
            }
        }
        (NodeKind::Scalar { text, plain: true }, Yaml::Int(want)) => {
            if text.parse::<i64>() == Ok(*want) {
                Ok(())
            } else {
                mismatch()
            }
        }
        (NodeKind::Scalar { text, plain: true }, Yaml::Bool(want)) => {
            if *text == want.to_string() {
                Ok(())
            } else {
                mismatch()
            }
        }
        (NodeKind::Scalar { text, plain: true }, Yaml::Seq(items))
            if items.is_empty() && text == "[]" =>
        {
            Ok(())
        }
        (NodeKind::Sequence(nodes), Yaml::Seq(items)) if nodes.len() == items.len() => {
            for (index, (node, item)) in nodes.iter().zip(items).enumerate() {
                compare(node, item, &format!("{at}[{index}]"))?;
            }
            Ok(())
        }
        (NodeKind::Mapping(pairs), Yaml::Map(entries)) if pairs.len() == entries.len() => {
            for ((key, value), (want_key, want)) in pairs.iter().zip(entries) {
                if key.scalar() != Some(want_key.as_str()) {
                    return Err(format!("`{at}.{want_key}` reads back as another key"));
                }
                compare(value, want, &format!("{at}.{want_key}"))?;
            }
            Ok(())
        }
        _ => mismatch(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_that_could_be_read_as_something_else_are_quoted() {
        for (text, written) in [
            ("web", "web"),
            ("fleet.project", "fleet.project"),
            ("/var/lib/data", "/var/lib/data"),
            ("8080", "\"8080\""),
            ("1.5", "\"1.5\""),
            ("yes", "\"yes\""),
            ("No", "\"No\""),
            ("", "\"\""),
            ("a: b", "\"a: b\""),
            ("#x", "\"#x\""),
            ("say \"hi\"\n", "\"say \\\"hi\\\"\\n\""),
            ("-x", "\"-x\""),
            ("${HOME}", "\"${HOME}\""),
        ] {
            assert_eq!(scalar_text(text), written, "{text:?}");
        }
    }

    #[test]
    fn a_document_reads_back_as_written() {
        let mut document = Yaml::map();
        document.push("version", Yaml::str("3.8"));
        let mut service = Yaml::map();
        service.push("image", Yaml::str("fleet-demo/web:dev"));
        service.push("command", Yaml::strs(["sh", "-c", "echo $$HOME: ok"]));
        service.push("empty", Yaml::Seq(Vec::new()));
        service.push("none", Yaml::map());
        let mut port = Yaml::map();
        port.push("target", Yaml::int(80));
        port.push("published", Yaml::int(8080));
        port.push("flag", Yaml::Bool(true));
        service.push("ports", Yaml::Seq(vec![port.clone(), port]));
        service.push("nested", Yaml::Seq(vec![Yaml::strs(["a", "b"])]));
        document.push("services", Yaml::Map(vec![("web".into(), service)]));
        let text = document.to_text();
        assert_eq!(
            text,
            "version: \"3.8\"\nservices:\n  web:\n    image: \"fleet-demo/web:dev\"\n    command:\n      - sh\n      - \"-c\"\n      - \"echo $$HOME: ok\"\n    empty: []\n    none: {}\n    ports:\n      - target: 80\n        published: 8080\n        flag: true\n      - target: 80\n        published: 8080\n        flag: true\n    nested:\n      -\n        - a\n        - b\n"
        );
        round_trip(&text, &document).expect("reads back");
        let mut other = document.clone();
        other.push("extra", Yaml::str("x"));
        assert!(round_trip(&text, &other).is_err());
    }
}
