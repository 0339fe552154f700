//! A YAML (and JSON, as YAML 1.2 flow) tree with byte spans, built from `saphyr-parser` events.
//!
//! Every node keeps its byte span in the file; scalars also keep their style so that a span
//! inside the decoded value (a CEL sub-expression) can be mapped back to the file
//! ([`Scalar::map_span`]).

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use crate::diagnostic::Span;
use crate::source::{LineIndex, offset_u32};

/// How a scalar was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `value`
    Plain,
    /// `'value'`
    SingleQuoted,
    /// `"value"`
    DoubleQuoted,
    /// `|` block
    Literal,
    /// `>` block
    Folded,
}

/// A scalar value.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// The decoded text.
    pub value: String,
    /// How it was written.
    pub style: Style,
    /// Its explicit tag (`!!str`), if any.
    pub tag: Option<String>,
}

/// What a scalar means under the YAML 1.2 core schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Typed<'a> {
    /// `null`, `~` or empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Anything else.
    Str(&'a str),
}

impl Scalar {
    /// The scalar under the core schema: only plain scalars can be non-strings.
    #[must_use]
    pub fn typed(&self) -> Typed<'_> {
        if self.style != Style::Plain || self.tag.as_deref().is_some_and(|t| t.ends_with("str")) {
            return Typed::Str(&self.value);
        }
        let v = self.value.as_str();
        match v {
            "" | "~" | "null" | "Null" | "NULL" => return Typed::Null,
            "true" | "True" | "TRUE" => return Typed::Bool(true),
            "false" | "False" | "FALSE" => return Typed::Bool(false),
            _ => {}
        }
        if let Some(i) = parse_int(v) {
            return Typed::Int(i);
        }
        let looks_float = v
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
            && v.bytes().any(|b| b.is_ascii_digit());
        if looks_float && let Ok(f) = v.parse::<f64>() {
            return Typed::Float(f);
        }
        match v {
            ".inf" | ".Inf" | ".INF" | "+.inf" => Typed::Float(f64::INFINITY),
            "-.inf" | "-.Inf" | "-.INF" => Typed::Float(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => Typed::Float(f64::NAN),
            _ => Typed::Str(v),
        }
    }
}

fn parse_int(v: &str) -> Option<i64> {
    let (neg, digits) = match v.as_bytes().first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -magnitude } else { magnitude })
}

/// A node of the tree.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// A scalar.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order (duplicates are reported by the loader, not merged).
    Map(Vec<(Node, Node)>),
}

/// A node with its byte span in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The content.
    pub kind: NodeKind,
    /// Byte range in the file (for quoted scalars including the quotes).
    pub span: Span,
    /// True for flow collections (`{…}` / `[…]`).
    pub flow: bool,
}

impl Node {
    /// The scalar, if this is one.
    #[must_use]
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar text, if this is a scalar.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.value.as_str())
    }

    /// The mapping entries, if this is a mapping.
    #[must_use]
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The sequence items, if this is a sequence.
    #[must_use]
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value of key `key` in a mapping (the first one, if duplicated).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A word for the node's kind, for messages (`string`, `list`, `map`, …).
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Seq(_) => "list",
            NodeKind::Map(_) => "map",
            NodeKind::Scalar(s) => match s.typed() {
                Typed::Null => "null",
                Typed::Bool(_) => "bool",
                Typed::Int(_) => "int",
                Typed::Float(_) => "float",
                Typed::Str(_) => "string",
            },
        }
    }
}

/// A document that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// The parser's message.
    pub message: String,
    /// Where (an empty span at the failure point).
    pub span: Span,
}

/// The most nodes alias expansion may produce, against "billion laughs" documents.
const MAX_NODES: usize = 1_000_000;

/// The deepest nesting of collections accepted (policies need fewer than 20 levels); deeper
/// documents are refused instead of exhausting the stack of the recursive passes.
pub const MAX_DEPTH: usize = 128;

/// Parses `text` (YAML or JSON). Returns the root of the first document, `None` for an empty
/// stream, and a [`SyntaxError`] when the text is not YAML. Further documents after the first
/// are reported as an error.
///
/// # Errors
/// A syntax error, a second document, or an alias expansion over the node limit.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let index = LineIndex::new(text);
    let mut builder = Builder {
        text,
        index: &index,
        anchors: Vec::new(),
        nodes: 0,
        depth: 0,
    };
    let mut parser = Parser::new_from_str(text);
    let mut root = None;
    let mut documents = 0;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| builder.scan_error(&e))?;
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        message: "more than one YAML document in the file".into(),
                        span: builder.span(&span),
                    });
                }
            }
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            other => {
                root = Some(builder.node(&mut parser, other, &span)?);
            }
        }
    }
    Ok(root)
}

struct Builder<'a> {
    text: &'a str,
    index: &'a LineIndex,
    anchors: Vec<(usize, Node)>,
    nodes: usize,
    depth: usize,
}

impl Builder<'_> {
    fn offset(&self, m: &saphyr_parser::Marker) -> u32 {
        self.index.offset_of(self.text, m.line(), m.col())
    }

    fn span(&self, s: &saphyr_parser::Span) -> Span {
        let start = self.offset(&s.start);
        Span::new(start, self.offset(&s.end).max(start))
    }

    fn scan_error(&self, e: &ScanError) -> SyntaxError {
        let at = self.offset(e.marker());
        SyntaxError {
            message: e.info().to_owned(),
            span: Span::new(at, at),
        }
    }

    fn count(&mut self, n: usize, span: Span) -> Result<(), SyntaxError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                message: "document too large (alias expansion over one million nodes)".into(),
                span,
            });
        }
        Ok(())
    }

    fn next(
        &self,
        parser: &mut Parser<'_, saphyr_parser::StrInput<'_>>,
    ) -> Result<(Event<'static>, saphyr_parser::Span), SyntaxError> {
        match parser.next_event() {
            Some(Ok((ev, span))) => Ok((into_owned(ev), span)),
            Some(Err(e)) => Err(self.scan_error(&e)),
            None => Err(SyntaxError {
                message: "unexpected end of input".into(),
                span: Span::new(offset_u32(self.text.len()), offset_u32(self.text.len())),
            }),
        }
    }

    fn node(
        &mut self,
        parser: &mut Parser<'_, saphyr_parser::StrInput<'_>>,
        event: Event<'_>,
        span: &saphyr_parser::Span,
    ) -> Result<Node, SyntaxError> {
        let start_span = self.span(span);
        self.count(1, start_span)?;
        let opens = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..));
        if opens {
            if self.depth >= MAX_DEPTH {
                return Err(SyntaxError {
                    message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    span: start_span,
                });
            }
            self.depth += 1;
        }
        let result = self.node_inner(parser, event, start_span);
        if opens {
            self.depth -= 1;
        }
        result
    }

    fn node_inner(
        &mut self,
        parser: &mut Parser<'_, saphyr_parser::StrInput<'_>>,
        event: Event<'_>,
        start_span: Span,
    ) -> Result<Node, SyntaxError> {
        let (node, anchor) = match event {
            Event::Scalar(value, style, anchor, tag) => {
                let style = match style {
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                    _ => Style::Plain,
                };
                let node = Node {
                    kind: NodeKind::Scalar(Scalar {
                        value: value.into_owned(),
                        style,
                        tag: tag.map(|t| format!("{}{}", t.handle, t.suffix)),
                    }),
                    span: start_span,
                    flow: false,
                };
                (node, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let flow = self.text.as_bytes().get(start_span.start as usize) == Some(&b'[');
                let mut items = Vec::new();
                let mut end = start_span.end;
                loop {
                    let (ev, sp) = self.next(parser)?;
                    if matches!(ev, Event::SequenceEnd) {
                        end = end.max(self.span(&sp).end);
                        break;
                    }
                    let item = self.node(parser, ev, &sp)?;
                    end = end.max(item.span.end);
                    items.push(item);
                }
                let node = Node {
                    kind: NodeKind::Seq(items),
                    span: Span::new(start_span.start, end),
                    flow,
                };
                (node, anchor)
            }
            Event::MappingStart(anchor, _) => {
                let flow = self.text.as_bytes().get(start_span.start as usize) == Some(&b'{');
                let mut entries = Vec::new();
                let mut end = start_span.end;
                loop {
                    let (ev, sp) = self.next(parser)?;
                    if matches!(ev, Event::MappingEnd) {
                        if flow {
                            end = end.max(self.span(&sp).end);
                        }
                        break;
                    }
                    let key = self.node(parser, ev, &sp)?;
                    let (ev, sp) = self.next(parser)?;
                    let value = self.node(parser, ev, &sp)?;
                    end = end.max(value.span.end).max(key.span.end);
                    entries.push((key, value));
                }
                let node = Node {
                    kind: NodeKind::Map(entries),
                    span: Span::new(start_span.start, end),
                    flow,
                };
                (node, anchor)
            }
            Event::Alias(id) => {
                let Some((_, target)) = self.anchors.iter().rev().find(|(a, _)| *a == id) else {
                    return Err(SyntaxError {
                        message: "alias to an unknown anchor".into(),
                        span: start_span,
                    });
                };
                let mut copy = target.clone();
                let size = count_nodes(&copy);
                self.count(size, start_span)?;
                copy.span = start_span;
                return Ok(copy);
            }
            _ => {
                return Err(SyntaxError {
                    message: "unexpected YAML event".into(),
                    span: start_span,
                });
            }
        };
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        Ok(node)
    }
}

fn count_nodes(n: &Node) -> usize {
    match &n.kind {
        NodeKind::Scalar(_) => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
    }
}

fn into_owned(ev: Event<'_>) -> Event<'static> {
    match ev {
        Event::Scalar(v, s, a, t) => Event::Scalar(
            std::borrow::Cow::Owned(v.into_owned()),
            s,
            a,
            t.map(|t| std::borrow::Cow::Owned(t.into_owned())),
        ),
        Event::SequenceStart(a, t) => {
            Event::SequenceStart(a, t.map(|t| std::borrow::Cow::Owned(t.into_owned())))
        }
        Event::MappingStart(a, t) => {
            Event::MappingStart(a, t.map(|t| std::borrow::Cow::Owned(t.into_owned())))
        }
        Event::Nothing => Event::Nothing,
        Event::StreamStart => Event::StreamStart,
        Event::StreamEnd => Event::StreamEnd,
        Event::DocumentStart(b) => Event::DocumentStart(b),
        Event::DocumentEnd => Event::DocumentEnd,
        Event::Alias(a) => Event::Alias(a),
        Event::SequenceEnd => Event::SequenceEnd,
        Event::MappingEnd => Event::MappingEnd,
    }
}

mod spanmap;

impl Node {
    /// Maps `span`, a byte range in this scalar's decoded value, to a byte range in `text`
    /// (the file the node came from). Exact for plain, quoted (escapes and `''` included) and
    /// literal block scalars; folded block scalars map line by line when their folding can be
    /// reproduced. Falls back to the whole node span when it cannot map.
    #[must_use]
    pub fn map_span(&self, text: &str, span: Span) -> Span {
        let Some(scalar) = self.as_scalar() else {
            return self.span;
        };
        match spanmap::offsets(text, self.span, scalar) {
            Some(table) => {
                let at = |i: u32| table.get(i as usize).copied();
                match (at(span.start), at(span.end.saturating_sub(1))) {
                    (Some((s, _)), Some((_, e))) if span.end > span.start => Span::new(s, e.max(s)),
                    (Some((s, _)), _) => Span::new(s, s),
                    // An empty span at the very end of the value.
                    (None, _) if span.start as usize == table.len() => {
                        let end = table.last().map_or(self.span.start, |&(_, e)| e);
                        Span::new(end, end)
                    }
                    _ => self.span,
                }
            }
            None => self.span,
        }
    }
}
