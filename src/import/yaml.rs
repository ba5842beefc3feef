//! YAML text -> a tree of [`Node`]s that remember where they were written.
//!
//! Owns reading a compose file's YAML (with `saphyr-parser`, a maintained YAML 1.2
//! parser that reports where each event is): scalars keep their text and whether they
//! were quoted (so `"8080"` stays a string and `8080` can be read as a number), anchors
//! and aliases are resolved by copying, `<<` merge keys are applied, and every node
//! carries its byte span for diagnostics and warnings. It knows nothing of compose.
//!
//! Theory of operation: the parser's events are folded on a stack of open sequences
//! and mappings; a finished node goes into its parent (or becomes the document). A
//! mapping applies its merge keys when it closes: keys written in it win over merged
//! ones, and among several merged mappings the first listed wins, as YAML's merge key
//! type says.

use std::collections::HashMap;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use crate::manifest::Diagnostic;

/// How many nodes aliases may copy in all: a few nested anchors could otherwise expand
/// into billions ("billion laughs"); real compose files copy a few hundred.
const ALIAS_BUDGET: usize = 100_000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: NodeKind,
    /// Byte range in the source.
    pub span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    Scalar {
        text: String,
        /// Written without quotes (and not as a block scalar): its type comes from its
        /// text (`8080` is a number, `true` a boolean, `~` or nothing null).
        plain: bool,
    },
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    /// The text of a scalar (of any type).
    pub(crate) fn scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub(crate) fn mapping(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Mapping(entries) => Some(entries),
            _ => None,
        }
    }

    pub(crate) fn sequence(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Sequence(items) => Some(items),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.mapping()?
            .iter()
            .find(|(name, _)| name.scalar() == Some(key))
            .map(|(_, value)| value)
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "null",
            NodeKind::Scalar { .. } => "scalar",
            NodeKind::Sequence(_) => "list",
            NodeKind::Mapping(_) => "mapping",
        }
    }
}

/// Parses one YAML document. An empty file is `Ok(None)`.
pub(crate) fn parse(source: &str) -> Result<Option<Node>, Diagnostic> {
    // saphyr counts characters; diagnostics count bytes.
    let byte_of: Vec<usize> = source
        .char_indices()
        .map(|(byte, _)| byte)
        .chain(std::iter::once(source.len()))
        .collect();
    let to_byte = |index: usize| byte_of.get(index).copied().unwrap_or(source.len());
    let scan_error = |err: ScanError| {
        let at = to_byte(err.marker().index());
        Diagnostic::new(format!("invalid YAML: {}", err.info()), at..at)
    };

    let mut builder = Builder::default();
    for event in Parser::new_from_str(source) {
        let (event, span) = event.map_err(scan_error)?;
        let span = to_byte(span.start.index())..to_byte(span.end.index());
        builder.event(event, span)?;
    }
    let mut documents = builder.documents.into_iter();
    let first = documents.next();
    if let Some(second) = documents.next() {
        return Err(Diagnostic::new(
            "a compose file holds one YAML document; this one has more",
            second.span.start..second.span.start,
        ));
    }
    Ok(first)
}

#[derive(Default)]
struct Builder {
    /// Open collections, each with its anchor id (0: none).
    stack: Vec<(Node, usize)>,
    /// Per open mapping: the key read, waiting for its value.
    keys: Vec<Option<Node>>,
    anchors: HashMap<usize, Node>,
    documents: Vec<Node>,
    copied: usize,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Range<usize>) -> Result<(), Diagnostic> {
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let node = Node {
                    kind: NodeKind::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                    span,
                };
                self.finish(node, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                self.open(NodeKind::Sequence(Vec::new()), span, anchor);
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.open(NodeKind::Mapping(Vec::new()), span, anchor);
                self.keys.push(None);
                Ok(())
            }
            Event::SequenceEnd => self.close(span),
            Event::MappingEnd => {
                self.keys.pop();
                self.close(span)
            }
            Event::Alias(id) => {
                let Some(anchored) = self.anchors.get(&id) else {
                    return Err(Diagnostic::new("unknown alias", span));
                };
                self.copied += count(anchored);
                if self.copied > ALIAS_BUDGET {
                    return Err(Diagnostic::new(
                        format!("aliases expand to more than {ALIAS_BUDGET} nodes"),
                        span,
                    ));
                }
                let mut copy = anchored.clone();
                copy.span = span;
                self.finish(copy, 0)
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => Ok(()),
        }
    }

    fn open(&mut self, kind: NodeKind, span: Range<usize>, anchor: usize) {
        self.stack.push((Node { kind, span }, anchor));
    }

    fn close(&mut self, end: Range<usize>) -> Result<(), Diagnostic> {
        let Some((mut node, anchor)) = self.stack.pop() else {
            return Ok(());
        };
        node.span.end = node.span.end.max(end.start);
        if let NodeKind::Mapping(entries) = &mut node.kind {
            *entries = merge(std::mem::take(entries))?;
            check_duplicates(entries)?;
        }
        self.finish(node, anchor)
    }

    /// A complete node: remembered under its anchor, then put into its parent.
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), Diagnostic> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some((parent, _)) = self.stack.last_mut() else {
            self.documents.push(node);
            return Ok(());
        };
        match &mut parent.kind {
            NodeKind::Sequence(items) => items.push(node),
            NodeKind::Mapping(entries) => {
                let key = self.keys.last_mut().and_then(Option::take);
                match key {
                    Some(key) => entries.push((key, node)),
                    None => {
                        if !matches!(node.kind, NodeKind::Scalar { .. }) {
                            return Err(Diagnostic::new(
                                "a mapping key must be a plain value",
                                node.span,
                            ));
                        }
                        if let Some(slot) = self.keys.last_mut() {
                            *slot = Some(node);
                        }
                    }
                }
            }
            NodeKind::Scalar { .. } => {}
        }
        Ok(())
    }
}

fn count(node: &Node) -> usize {
    1 + match &node.kind {
        NodeKind::Scalar { .. } => 0,
        NodeKind::Sequence(items) => items.iter().map(count).sum(),
        NodeKind::Mapping(entries) => entries.iter().map(|(_, value)| 1 + count(value)).sum(),
    }
}

fn is_merge_key(key: &Node) -> bool {
    matches!(&key.kind, NodeKind::Scalar { text, plain: true } if text == "<<")
}

/// Applies `<<` entries: their mappings' keys are added where the mapping has no such
/// key of its own (nor an earlier merged one).
fn merge(entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, Diagnostic> {
    if !entries.iter().any(|(key, _)| is_merge_key(key)) {
        return Ok(entries);
    }
    let mut own = Vec::new();
    let mut sources = Vec::new();
    for (key, value) in entries {
        if !is_merge_key(&key) {
            own.push((key, value));
            continue;
        }
        match value.kind {
            NodeKind::Mapping(merged) => sources.push(merged),
            NodeKind::Sequence(items) => {
                for item in items {
                    match item.kind {
                        NodeKind::Mapping(merged) => sources.push(merged),
                        _ => {
                            return Err(Diagnostic::new(
                                "a merge key (`<<`) takes a mapping or a list of mappings",
                                item.span,
                            ));
                        }
                    }
                }
            }
            NodeKind::Scalar { .. } => {
                return Err(Diagnostic::new(
                    "a merge key (`<<`) takes a mapping or a list of mappings",
                    value.span,
                ));
            }
        }
    }
    let mut merged: Vec<(Node, Node)> = Vec::new();
    for source in sources {
        for (key, value) in source {
            let known = own
                .iter()
                .chain(merged.iter())
                .any(|(seen, _)| seen.scalar() == key.scalar());
            if !known {
                merged.push((key, value));
            }
        }
    }
    // Merged keys first: a template's keys read before the service's own, as written.
    merged.extend(own);
    Ok(merged)
}

fn check_duplicates(entries: &[(Node, Node)]) -> Result<(), Diagnostic> {
    for (index, (key, _)) in entries.iter().enumerate() {
        if entries[..index]
            .iter()
            .any(|(earlier, _)| earlier.scalar() == key.scalar())
        {
            return Err(Diagnostic::new(
                format!("duplicate key `{}`", key.scalar().unwrap_or_default()),
                key.span.clone(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(source: &str) -> Node {
        match parse(source) {
            Ok(Some(node)) => node,
            other => panic!("{source}: {other:?}"),
        }
    }

    fn keys(node: &Node) -> Vec<&str> {
        node.mapping()
            .unwrap_or_default()
            .iter()
            .filter_map(|(key, _)| key.scalar())
            .collect()
    }

    #[test]
    fn scalars_keep_their_text_style_and_span() {
        let source = "a: 8080\nb: \"8080\"\nc:\nd: ~\né: 'x'\n";
        let root = load(source);
        let a = root.get("a").expect("a");
        assert_eq!(
            a.kind,
            NodeKind::Scalar {
                text: "8080".into(),
                plain: true
            }
        );
        assert_eq!(&source[a.span.clone()], "8080");
        let b = root.get("b").expect("b");
        assert!(matches!(&b.kind, NodeKind::Scalar { plain: false, .. }));
        assert_eq!(&source[b.span.clone()], "\"8080\"");
        assert!(root.get("c").expect("c").is_null());
        assert!(root.get("d").expect("d").is_null());
        let e = root.get("é").expect("é");
        assert_eq!(&source[e.span.clone()], "'x'");
    }

    #[test]
    fn aliases_copy_and_merge_keys_apply_with_own_keys_winning() {
        let source = "\
x-base: &base
  restart: always
  environment: {A: 1}
x-more: &more
  restart: never
  user: app
services:
  web:
    <<: [*base, *more]
    restart: no
    image: nginx
  db: *base
";
        let root = load(source);
        let services = root.get("services").expect("services");
        let web = services.get("web").expect("web");
        assert_eq!(keys(web), ["environment", "user", "restart", "image"]);
        assert_eq!(web.get("restart").and_then(Node::scalar), Some("no"));
        assert_eq!(web.get("user").and_then(Node::scalar), Some("app"));
        let db = services.get("db").expect("db");
        assert_eq!(keys(db), ["restart", "environment"]);
        // The copy is found where the alias was written; its insides where the anchor was.
        assert_eq!(&source[db.span.clone()], "*base");
        let restart = db.get("restart").expect("restart");
        assert_eq!(&source[restart.span.clone()], "always");
        assert!(restart.span.start < 30);
    }

    #[test]
    fn errors_have_a_place() {
        let error = parse("a: 1\nb: [1, 2\n").expect_err("unclosed");
        assert!(error.message.starts_with("invalid YAML: "), "{error:?}");
        let error = parse("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(error.message, "duplicate key `a`");
        assert_eq!(error.span, 10..11);
        let error = parse("a: *nothing\n").expect_err("unknown alias");
        assert!(error.message.contains("anchor"), "{error:?}");
        let error = parse("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert!(error.message.contains("one YAML document"), "{error:?}");
        let error = parse("a:\n  <<: 5\n").expect_err("bad merge");
        assert!(error.message.contains("merge key"), "{error:?}");
        assert_eq!(parse("").expect("empty is fine"), None);
        assert_eq!(parse("# only a comment\n").expect("fine"), None);
    }

    #[test]
    fn a_billion_laughs_is_refused() {
        let mut source = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut previous = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g'] {
            source.push_str(&format!(
                "{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
            ));
            previous = name;
        }
        let error = parse(&source).expect_err("too many copies");
        assert!(error.message.contains("aliases expand"), "{error:?}");
    }
}
