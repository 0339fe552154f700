//! Offset tables from a scalar's decoded value back to its bytes in the file.
//!
//! The decoder below re-reads the scalar's raw text by its style and records, for every byte
//! of the value it produces, the file offset it came from. The result is used only when it
//! reproduces the parser's value exactly; otherwise the caller falls back to the node span.

use super::{Scalar, Style};
use crate::diagnostic::Span;
use crate::source::offset_u32;

/// For every byte of `scalar.value`, the file byte range it was decoded from, or `None` when
/// the raw text cannot be decoded to the same value.
pub(super) fn offsets(text: &str, span: Span, scalar: &Scalar) -> Option<Vec<(u32, u32)>> {
    let mut out = Out::default();
    match scalar.style {
        Style::Plain => flow(text, span.start, span.end, Quote::None, &mut out),
        Style::SingleQuoted => flow(
            text,
            span.start + 1,
            span.end.checked_sub(1)?,
            Quote::Single,
            &mut out,
        ),
        Style::DoubleQuoted => flow(
            text,
            span.start + 1,
            span.end.checked_sub(1)?,
            Quote::Double,
            &mut out,
        ),
        Style::Literal => block(text, span, false, &mut out),
        Style::Folded => block(text, span, true, &mut out),
    }?;
    if out.value == scalar.value {
        return Some(out.map);
    }
    // Block chomping: the value may differ only in trailing line breaks.
    let core = scalar.value.trim_end_matches('\n');
    if matches!(scalar.style, Style::Literal | Style::Folded) && out.value.starts_with(core) {
        let mut map = out.map;
        let last = map
            .get(core.len().saturating_sub(1))
            .copied()
            .unwrap_or((span.start, span.start));
        map.truncate(core.len());
        map.resize(scalar.value.len(), last);
        return Some(map);
    }
    None
}

#[derive(Default)]
struct Out {
    value: String,
    map: Vec<(u32, u32)>,
}

impl Out {
    /// A character produced by the source bytes `at..end` (an escape, a fold).
    fn push(&mut self, c: char, at: u32, end: u32) {
        self.value.push(c);
        for _ in 0..c.len_utf8() {
            self.map.push((at, end));
        }
    }

    /// A character copied verbatim from `at`.
    fn push_raw(&mut self, c: char, at: u32) {
        self.value.push(c);
        let end = at + offset_u32(c.len_utf8());
        for _ in 0..c.len_utf8() {
            self.map.push((at, end));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Lines of `text[start..end]` as (offset of the line start, line text without `\r\n`).
fn lines(text: &str, start: u32, end: u32) -> Option<Vec<(u32, &str)>> {
    let raw = text.get(start as usize..end as usize)?;
    let mut lines = Vec::new();
    let mut at = start;
    for line in raw.split('\n') {
        let len = offset_u32(line.len());
        lines.push((at, line.strip_suffix('\r').unwrap_or(line)));
        at += len + 1;
    }
    Some(lines)
}

/// Plain and quoted (flow) scalars: line folding plus quote-specific escapes.
fn flow(text: &str, start: u32, end: u32, quote: Quote, out: &mut Out) -> Option<()> {
    let lines = lines(text, start, end)?;
    let last = lines.len() - 1;
    let mut pending_breaks = 0usize;
    let mut pending_at = start;
    let mut joined_before = false;
    for (i, &(at, line)) in lines.iter().enumerate() {
        // Leading white space of continuation lines is not content.
        let lead = if i == 0 {
            0
        } else {
            line.len() - line.trim_start_matches([' ', '\t']).len()
        };
        let body = &line[lead..];
        // Trailing white space before a line break is not content, except in the last line.
        let mut content = if i == last {
            body
        } else {
            body.trim_end_matches([' ', '\t'])
        };
        let mut escaped_break = false;
        if quote == Quote::Double && i != last {
            let trimmed = body.trim_end_matches([' ', '\t']);
            let slashes = trimmed.len() - trimmed.trim_end_matches('\\').len();
            if slashes % 2 == 1 {
                escaped_break = true;
                // Keep the white space before the escaped break.
                content = &body[..trimmed.len() - 1];
                let tail = &body[trimmed.len()..];
                if !tail.is_empty() {
                    content = &body[..body.len() - tail.len()];
                    content = content.strip_suffix('\\').unwrap_or(content);
                }
            }
        }
        if i > 0 {
            if content.is_empty() && i != last {
                pending_breaks += 1;
                continue;
            }
            if !joined_before {
                if pending_breaks == 0 {
                    out.push(' ', pending_at, pending_at);
                } else {
                    for _ in 0..pending_breaks {
                        out.push('\n', pending_at, pending_at);
                    }
                }
            }
            pending_breaks = 0;
        }
        let base = at + offset_u32(lead);
        decode_line(content, base, quote, out)?;
        joined_before = escaped_break;
        pending_at = at + offset_u32(line.len());
    }
    Some(())
}

fn decode_line(content: &str, base: u32, quote: Quote, out: &mut Out) -> Option<()> {
    let mut chars = content.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at = base + offset_u32(i);
        match (quote, c) {
            (Quote::Single, '\'') => {
                // `''` is one quote.
                chars.next()?;
                out.push('\'', at, at + 2);
            }
            (Quote::Double, '\\') => {
                let (_, e) = chars.next()?;
                let decoded = match e {
                    '0' => '\0',
                    'a' => '\x07',
                    'b' => '\x08',
                    't' | '\t' => '\t',
                    'n' => '\n',
                    'v' => '\x0b',
                    'f' => '\x0c',
                    'r' => '\r',
                    'e' => '\x1b',
                    ' ' => ' ',
                    '"' => '"',
                    '/' => '/',
                    '\\' => '\\',
                    'N' => '\u{85}',
                    '_' => '\u{a0}',
                    'L' => '\u{2028}',
                    'P' => '\u{2029}',
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut code = 0u32;
                        for _ in 0..n {
                            let (_, h) = chars.next()?;
                            code = code * 16 + h.to_digit(16)?;
                        }
                        char::from_u32(code)?
                    }
                    _ => return None,
                };
                let end = chars
                    .peek()
                    .map_or(base + offset_u32(content.len()), |&(j, _)| {
                        base + offset_u32(j)
                    });
                out.push(decoded, at, end);
            }
            _ => out.push_raw(c, at),
        }
    }
    Some(())
}

/// Literal and folded block scalars: the content starts at `span.start` (the parser's marker
/// for the first content character); its column is the indentation.
fn block(text: &str, span: Span, folded: bool, out: &mut Out) -> Option<()> {
    let line_start = text
        .get(..span.start as usize)?
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let indent = span.start as usize - line_start;
    if !text
        .get(line_start..span.start as usize)?
        .bytes()
        .all(|b| b == b' ')
    {
        return None;
    }
    let lines = lines(text, offset_u32(line_start), span.end)?;
    let mut prev_normal = false;
    let mut pending_breaks = 0usize;
    let mut pending_at = span.start;
    let mut first = true;
    for &(at, line) in &lines {
        if line.len() < indent || line.trim().is_empty() {
            if line.len() < indent && !line.trim().is_empty() {
                break;
            }
            pending_breaks += 1;
            pending_at = at;
            continue;
        }
        let content = &line[indent..];
        let normal = !content.starts_with([' ', '\t']);
        if !first {
            if folded && prev_normal && normal {
                if pending_breaks == 0 {
                    out.push(' ', pending_at, pending_at);
                } else {
                    for _ in 0..pending_breaks {
                        out.push('\n', pending_at, pending_at);
                    }
                }
            } else {
                for _ in 0..=pending_breaks {
                    out.push('\n', pending_at, pending_at);
                }
            }
        } else {
            for _ in 0..pending_breaks {
                out.push('\n', pending_at, pending_at);
            }
        }
        first = false;
        pending_breaks = 0;
        let base = at + offset_u32(indent);
        for (i, c) in content.char_indices() {
            out.push_raw(c, base + offset_u32(i));
        }
        prev_normal = normal;
        pending_at = at + offset_u32(line.len());
    }
    out.push('\n', pending_at, pending_at);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::super::{NodeKind, parse};
    use crate::diagnostic::Span;

    /// Parses `doc`, finds the value of key `k`, locates `needle` in its decoded value and
    /// returns the file text the mapped span covers.
    fn mapped<'a>(doc: &'a str, k: &str, needle: &str) -> &'a str {
        let root = parse(doc).unwrap().unwrap();
        let node = root.get(k).unwrap();
        let NodeKind::Scalar(s) = &node.kind else {
            panic!("not a scalar")
        };
        let at = s.value.find(needle).unwrap() as u32;
        let span = node.map_span(doc, Span::new(at, at + needle.len() as u32));
        &doc[span.range()]
    }

    #[test]
    fn plain_and_multiline_plain() {
        assert_eq!(mapped("a: x == é && y\n", "a", "y"), "y");
        assert_eq!(mapped("a: x ==\n   é &&\n   y\n", "a", "é &&"), "é &&");
    }

    #[test]
    fn single_quoted_with_doubled_quote() {
        assert_eq!(mapped("a: 'x == ''q'' && yy'\n", "a", "yy"), "yy");
        assert_eq!(mapped("a: 'x == ''q'' && yy'\n", "a", "'q'"), "''q''");
    }

    #[test]
    fn double_quoted_with_escapes() {
        let doc = "a: \"x[\\\"k\\\"] \\u00e9 && zz\"\n";
        assert_eq!(mapped(doc, "a", "zz"), "zz");
        assert_eq!(mapped(doc, "a", "\"k\""), "\\\"k\\\"");
        assert_eq!(mapped("a: \"ab\\\n  cd\"\n", "a", "bc"), "b\\\n  c");
    }

    #[test]
    fn literal_block_line_by_line() {
        let doc = "a: |\n  x &&\n    é.size() > 1\nb: 1\n";
        assert_eq!(mapped(doc, "a", "size()"), "size()");
    }

    #[test]
    fn folded_block() {
        let doc = "a: >-\n  x &&\n  y.size() > 1\nb: 1\n";
        assert_eq!(mapped(doc, "a", "y.size()"), "y.size()");
    }

    #[test]
    fn flow_collections() {
        let doc = "a: [\"p\", 'q q', r]\n";
        let root = parse(doc).unwrap().unwrap();
        let seq = root.get("a").unwrap().as_seq().unwrap();
        let span = seq[1].map_span(doc, Span::new(2, 3));
        assert_eq!(&doc[span.range()], "q");
    }
}
