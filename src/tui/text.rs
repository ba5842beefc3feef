//! Text helpers for the TUI: making service output safe to draw, measuring it in
//! terminal cells, cutting it with an ellipsis and hard-wrapping it.
//!
//! Owns no state. Widths are display cells (`unicode-width`), never bytes or chars, so
//! wide characters and combining marks cannot push a cell past its column. Nothing here
//! knows about services or layout.

use std::borrow::Cow;

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

pub const ELLIPSIS: char = '…';
/// Tabs expand to the next multiple of this, as most terminals do by default.
const TAB_STOP: usize = 8;

pub fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

fn char_width(c: char) -> usize {
    UnicodeWidthChar::width(c).unwrap_or(0)
}

/// Makes a service's line safe to put into terminal cells: ANSI escape sequences are
/// removed (a stray `ESC` in a cell would be sent to the terminal as a command), tabs
/// are expanded, a carriage return keeps only what a terminal would finally show
/// (progress bars), and other control characters are dropped.
pub fn sanitize(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    let text = text.strip_suffix('\r').unwrap_or(&text);
    let visible = match text.rfind('\r') {
        Some(at) if at + 1 < text.len() => &text[at + 1..],
        _ => text,
    };
    let mut out = String::with_capacity(visible.len());
    let mut column = 0usize;
    let mut chars = visible.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => {
                let spaces = TAB_STOP - column % TAB_STOP;
                out.extend(std::iter::repeat_n(' ', spaces));
                column += spaces;
            }
            '\u{1b}' => skip_escape(&mut chars),
            c if c.is_control() => {}
            c => {
                out.push(c);
                column += char_width(c);
            }
        }
    }
    out
}

/// Skips one escape sequence after its `ESC`: CSI (`ESC [ ... final`), OSC and other
/// strings (`ESC ] ... BEL` or `ESC ] ... ESC \`), or a two-character sequence.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => {
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
        Some(']' | 'P' | '_' | '^' | 'X') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' {
                    break;
                }
                if c == '\u{1b}' {
                    if chars.peek() == Some(&'\\') {
                        chars.next();
                    }
                    break;
                }
            }
        }
        _ => {}
    }
}

/// `text` cut to at most `max` cells; a cut ends in `…`.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if width(text) <= max {
        return Cow::Borrowed(text);
    }
    if max == 0 {
        return Cow::Borrowed("");
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_width(c);
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push(ELLIPSIS);
    Cow::Owned(out)
}

/// `text` cut (with `…`) or padded with spaces to exactly `cells` cells.
pub fn fit(text: &str, cells: usize) -> String {
    let cut = truncate(text, cells);
    let pad = cells.saturating_sub(width(&cut));
    let mut out = cut.into_owned();
    out.extend(std::iter::repeat_n(' ', pad));
    out
}

pub fn spans_width(spans: &[Span<'_>]) -> usize {
    spans.iter().map(|span| width(&span.content)).sum()
}

/// One row of at most `max` cells from styled pieces; a cut ends in `…`, styled like
/// the text it replaces.
pub fn truncate_spans(spans: Vec<Span<'static>>, max: usize) -> Line<'static> {
    if spans_width(&spans) <= max {
        return Line::from(spans);
    }
    let mut out = Vec::new();
    let mut used = 0;
    let budget = max.saturating_sub(1);
    let mut last_style = Style::default();
    for span in spans {
        last_style = span.style;
        let span_width = width(&span.content);
        if used + span_width <= budget {
            used += span_width;
            out.push(span);
            continue;
        }
        let mut piece = String::new();
        for c in span.content.chars() {
            let w = char_width(c);
            if used + w > budget {
                break;
            }
            piece.push(c);
            used += w;
        }
        if !piece.is_empty() {
            out.push(Span::styled(piece, span.style));
        }
        break;
    }
    if max > 0 {
        out.push(Span::styled(ELLIPSIS.to_string(), last_style));
    }
    Line::from(out)
}

/// Rows of `width` cells holding the styled pieces in order, cut at any character
/// (log lines are not prose; a hard wrap keeps row counts predictable for scrolling).
pub fn wrap_spans(spans: Vec<Span<'static>>, width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut row: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for span in spans {
        let mut piece = String::new();
        for c in span.content.chars() {
            let w = char_width(c);
            if used + w > width && used > 0 {
                if !piece.is_empty() {
                    row.push(Span::styled(std::mem::take(&mut piece), span.style));
                }
                rows.push(Line::from(std::mem::take(&mut row)));
                used = 0;
            }
            piece.push(c);
            used += w;
        }
        if !piece.is_empty() {
            row.push(Span::styled(piece, span.style));
        }
    }
    if !row.is_empty() || rows.is_empty() {
        rows.push(Line::from(row));
    }
    rows
}

/// How many rows [`wrap_spans`] makes of text `cells` wide.
pub fn wrapped_rows(cells: usize, width: usize) -> usize {
    cells.div_ceil(width.max(1)).max(1)
}

/// Where `query` occurs in `text`, as byte ranges. Smart case: a query with an
/// uppercase letter matches case-sensitively, otherwise ASCII case is ignored.
pub fn find_all(text: &str, query: &str) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    if query.is_empty() {
        return found;
    }
    let mut from = 0;
    while let Some(at) = find_from(text, query, from) {
        found.push(at..at + query.len());
        from = at + query.len();
    }
    found
}

pub fn contains(text: &str, query: &str) -> bool {
    !query.is_empty() && find_from(text, query, 0).is_some()
}

fn find_from(text: &str, query: &str, from: usize) -> Option<usize> {
    let haystack = text.get(from..)?;
    if query.chars().any(char::is_uppercase) {
        return haystack.find(query).map(|at| at + from);
    }
    let needle = query.as_bytes();
    let bytes = haystack.as_bytes();
    if needle.len() > bytes.len() {
        return None;
    }
    let first = needle[0].to_ascii_lowercase();
    let first_upper = needle[0].to_ascii_uppercase();
    (0..=bytes.len() - needle.len())
        .filter(|&at| bytes[at] == first || bytes[at] == first_upper)
        .find(|&at| {
            haystack.is_char_boundary(at)
                && haystack.is_char_boundary(at + needle.len())
                && bytes[at..at + needle.len()].eq_ignore_ascii_case(needle)
        })
        .map(|at| at + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_escapes_and_keeps_the_last_carriage_return_part() {
        assert_eq!(sanitize("\u{1b}[31merror\u{1b}[0m: x".into()), "error: x");
        assert_eq!(sanitize("a\tb".into()), "a       b");
        assert_eq!(sanitize("10%\r50%\r100%".into()), "100%");
        assert_eq!(sanitize("crlf\r".into()), "crlf");
        assert_eq!(sanitize("\u{1b}]0;title\u{7}x".into()), "x");
        assert_eq!(sanitize("bell\u{7}".into()), "bell");
        assert_eq!(sanitize("plain".into()), "plain");
    }

    #[test]
    fn truncate_cuts_with_an_ellipsis_by_cells() {
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello world", 6), "hello…");
        assert_eq!(truncate("日本語テキスト", 5), "日本…");
        assert_eq!(fit("ab", 4), "ab  ");
        assert_eq!(fit("abcdef", 4), "abc…");
    }

    #[test]
    fn wrap_makes_the_rows_it_promises() {
        let rows = wrap_spans(vec![Span::raw("abcdefghij")], 4);
        assert_eq!(rows.len(), wrapped_rows(10, 4));
        assert_eq!(rows[2].to_string(), "ij");
    }

    #[test]
    fn search_is_smart_case() {
        assert_eq!(find_all("Error error ERROR", "error").len(), 3);
        assert_eq!(find_all("Error error ERROR", "Error"), vec![0..5]);
        assert!(!contains("abc", ""));
        assert!(!contains("é error", "ERR"));
        assert_eq!(find_all("ééé", "é"), vec![0..2, 2..4, 4..6]);
    }
}
