//! Canonical formatting of policy documents (`wicket fmt`): phases in evaluation order, rule
//! keys as `name`, `expressions`, `actions`, action keys as `type`, `config`, two-space
//! indentation; optionally migrating the legacy `inbound`/`outbound` format.
//!
//! The YAML library keeps no comments, so formatting drops them: [`Formatted::had_comments`]
//! tells the caller, which refuses to overwrite such a file unless forced.

use crate::phase::Phase;
use crate::yaml::{self, Node, NodeKind, Scalar, Style, SyntaxError, Typed};

/// Why a document cannot be formatted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The text does not parse.
    #[error("invalid YAML at byte {}: {}", .0.span.start, .0.message)]
    Syntax(SyntaxError),
    /// The document is not a map of phases (agent configs are not formatted).
    #[error("the document is not a policy (a map of phases); agent configs are not formatted")]
    NotAPolicy,
    /// The formatted text would not mean the same as the input (a formatter bug); nothing
    /// is written.
    #[error("formatting would change the document's meaning; leaving it unchanged")]
    Unstable,
}

/// A formatted document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Formatted {
    /// The new text.
    pub text: String,
    /// Whether the input had comments (they are not in `text`).
    pub had_comments: bool,
    /// Whether legacy phases or fields were migrated.
    pub migrated: bool,
    /// Whether the input still uses the legacy format (when not migrating).
    pub legacy: bool,
}

/// Formats `text` (YAML or JSON; JSON stays JSON). With `migrate`, legacy `inbound` /
/// `outbound` become phase names and `custom-response.content` becomes `body`.
///
/// # Errors
/// [`FormatError`] when the text does not parse, is not a policy, or cannot be reproduced.
pub fn format(text: &str, migrate: bool) -> Result<Formatted, FormatError> {
    let root = yaml::parse(text)
        .map_err(FormatError::Syntax)?
        .ok_or(FormatError::NotAPolicy)?;
    let Some(entries) = root.as_map() else {
        return Err(FormatError::NotAPolicy);
    };
    let is_policy = entries.iter().any(|(k, _)| {
        k.as_str()
            .is_some_and(|k| Phase::from_key(k).is_some() || matches!(k, "inbound" | "outbound"))
    });
    if !is_policy {
        return Err(FormatError::NotAPolicy);
    }
    let had_comments = has_comments(text, &root);
    let legacy = entries
        .iter()
        .any(|(k, _)| matches!(k.as_str(), Some("inbound" | "outbound")));
    let mut phases: Vec<(String, Node)> = Vec::new();
    let mut migrated = false;
    for (k, v) in entries {
        let key = k.as_str().unwrap_or_default().to_owned();
        let mut value = v.clone();
        let key = if migrate && matches!(key.as_str(), "inbound" | "outbound") {
            migrated = true;
            crate::model::legacy_phase_of(&key, v).as_str().to_owned()
        } else {
            key
        };
        if migrate {
            migrated |= rename_content(&mut value);
        }
        phases.push((key, value));
    }
    let rank = |k: &str| Phase::from_key(k).map_or(Phase::ALL.len(), crate::model::phase_index);
    phases.sort_by_key(|(k, _)| rank(k));
    let json = text.trim_start().starts_with('{');
    let out = if json {
        let mut s =
            serde_json::to_string_pretty(&to_json(&phases)).map_err(|_| FormatError::Unstable)?;
        s.push('\n');
        s
    } else {
        let mut s = String::new();
        for (k, v) in &phases {
            s.push_str(&key(k));
            s.push(':');
            emit_value(v, 0, &mut s, Ctx::Phase);
        }
        s
    };
    // The result must parse to the same document.
    let again = yaml::parse(&out)
        .map_err(|_| FormatError::Unstable)?
        .ok_or(FormatError::Unstable)?;
    let expected = Node {
        kind: NodeKind::Map(phases.iter().map(|(k, v)| (plain(k), v.clone())).collect()),
        span: root.span,
        flow: false,
    };
    if !same(&again, &expected) {
        return Err(FormatError::Unstable);
    }
    Ok(Formatted {
        text: out,
        had_comments,
        migrated,
        legacy: legacy && !migrate,
    })
}

fn plain(s: &str) -> Node {
    Node {
        kind: NodeKind::Scalar(Scalar {
            value: s.to_owned(),
            style: Style::Plain,
            tag: None,
        }),
        span: crate::diagnostic::Span::default(),
        flow: false,
    }
}

/// Structural equality by meaning (typed scalars; map entries in any order).
fn same(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (NodeKind::Scalar(x), NodeKind::Scalar(y)) => match (x.typed(), y.typed()) {
            (Typed::Float(p), Typed::Float(q)) => p == q || (p.is_nan() && q.is_nan()),
            (p, q) => p == q,
        },
        (NodeKind::Seq(x), NodeKind::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (NodeKind::Map(x), NodeKind::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k1, v1)| y.iter().any(|(k2, v2)| same(k1, k2) && same(v1, v2)))
        }
        _ => false,
    }
}

/// Renames `custom-response.config.content` to `body` everywhere; returns whether it did.
fn rename_content(node: &mut Node) -> bool {
    let mut changed = false;
    match &mut node.kind {
        NodeKind::Seq(items) => {
            for i in items {
                changed |= rename_content(i);
            }
        }
        NodeKind::Map(entries) => {
            let is_custom = entries
                .iter()
                .any(|(k, v)| k.as_str() == Some("type") && v.as_str() == Some("custom-response"));
            for (k, v) in entries.iter_mut() {
                if is_custom && k.as_str() == Some("config") {
                    let has_body = v.get("body").is_some();
                    if let NodeKind::Map(cfg) = &mut v.kind {
                        for (ck, _) in cfg.iter_mut() {
                            if ck.as_str() == Some("content") && !has_body {
                                *ck = plain("body");
                                changed = true;
                            }
                        }
                    }
                } else {
                    changed |= rename_content(v);
                }
            }
        }
        NodeKind::Scalar(_) => {}
    }
    changed
}

/// Whether `text` has a `#` comment outside every scalar.
fn has_comments(text: &str, root: &Node) -> bool {
    let mut scalars = Vec::new();
    collect_scalars(root, &mut scalars);
    let bytes = text.as_bytes();
    text.match_indices('#').any(|(i, _)| {
        let at = u32::try_from(i).unwrap_or(u32::MAX);
        let boundary = i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'\r');
        boundary
            && !scalars
                .iter()
                .any(|s: &crate::diagnostic::Span| s.start <= at && at < s.end)
    })
}

fn collect_scalars(n: &Node, out: &mut Vec<crate::diagnostic::Span>) {
    match &n.kind {
        NodeKind::Scalar(_) => out.push(n.span),
        NodeKind::Seq(items) => items.iter().for_each(|i| collect_scalars(i, out)),
        NodeKind::Map(entries) => entries.iter().for_each(|(k, v)| {
            collect_scalars(k, out);
            collect_scalars(v, out);
        }),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Phase,
    Rule,
    Action,
    Other,
}

fn key_rank(ctx: Ctx, k: &str) -> usize {
    let order: &[&str] = match ctx {
        Ctx::Rule => &["name", "expressions", "actions"],
        Ctx::Action => &["type", "config"],
        Ctx::Phase | Ctx::Other => &[],
    };
    order.iter().position(|o| *o == k).unwrap_or(order.len())
}

fn key(k: &str) -> String {
    let simple = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && matches!(plain(k).as_scalar().map(Scalar::typed), Some(Typed::Str(_)));
    if simple { k.to_owned() } else { single(k) }
}

fn single(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn scalar(s: &Scalar) -> String {
    let v = &s.value;
    if s.style == Style::Plain && !v.contains('\n') {
        return if v.is_empty() { "''".into() } else { v.clone() };
    }
    if !v.chars().any(char::is_control) {
        // Pick the quote style that needs no escaping; else keep the author's.
        let has_single = v.contains('\'');
        let has_double = v.contains('"') || v.contains('\\');
        let double = match (has_single, has_double) {
            (true, false) => true,
            (false, true) => false,
            _ => s.style == Style::DoubleQuoted,
        };
        if !double {
            return single(v);
        }
    }
    serde_json::to_string(v).unwrap_or_else(|_| single(v))
}

fn block(s: &Scalar, indent: usize) -> Option<String> {
    let v = &s.value;
    if !matches!(s.style, Style::Literal | Style::Folded)
        || v.starts_with([' ', '\t', '\n'])
        || v.chars().any(|c| c.is_control() && c != '\n')
    {
        return None;
    }
    let trailing = v.len() - v.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let pad = " ".repeat(indent);
    let mut out = format!("|{chomp}\n");
    let body = v.strip_suffix('\n').unwrap_or(v);
    for line in body.split('\n') {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str(&pad);
            out.push_str(line);
            out.push('\n');
        }
    }
    Some(out)
}

fn child_ctx(ctx: Ctx) -> Ctx {
    match ctx {
        Ctx::Phase => Ctx::Rule,
        _ => Ctx::Other,
    }
}

/// Emits `v` as the value after `key:` (the caller has written `key:`).
fn emit_value(v: &Node, indent: usize, out: &mut String, ctx: Ctx) {
    match &v.kind {
        NodeKind::Scalar(s) => {
            if let Some(b) = block(s, indent + 2) {
                out.push(' ');
                out.push_str(&b);
            } else {
                out.push(' ');
                out.push_str(&scalar(s));
                out.push('\n');
            }
        }
        NodeKind::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        NodeKind::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        NodeKind::Seq(items) => {
            out.push('\n');
            let item_ctx = match ctx {
                Ctx::Phase => Ctx::Rule,
                Ctx::Rule => Ctx::Action,
                _ => Ctx::Other,
            };
            for item in items {
                emit_item(item, indent + 2, out, item_ctx);
            }
        }
        NodeKind::Map(entries) => {
            out.push('\n');
            emit_map(entries, indent + 2, out, child_ctx(ctx), false);
        }
    }
}

fn emit_map(
    entries: &[(Node, Node)],
    indent: usize,
    out: &mut String,
    ctx: Ctx,
    first_inline: bool,
) {
    let mut sorted: Vec<&(Node, Node)> = entries.iter().collect();
    sorted.sort_by_key(|(k, _)| key_rank(ctx, k.as_str().unwrap_or_default()));
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if !(first_inline && i == 0) {
            out.push_str(&" ".repeat(indent));
        }
        let name = k.as_str().unwrap_or_default();
        out.push_str(&key(name));
        out.push(':');
        let next = match (ctx, name) {
            (Ctx::Rule, "actions") => Ctx::Rule,
            (Ctx::Rule, _) => Ctx::Other,
            _ => Ctx::Other,
        };
        emit_value(v, indent, out, next);
    }
}

fn emit_item(item: &Node, indent: usize, out: &mut String, ctx: Ctx) {
    out.push_str(&" ".repeat(indent));
    out.push('-');
    match &item.kind {
        NodeKind::Map(entries) if !entries.is_empty() => {
            out.push(' ');
            emit_map(entries, indent + 2, out, ctx, true);
        }
        NodeKind::Seq(items) if !items.is_empty() => {
            out.push('\n');
            for i in items {
                emit_item(i, indent + 2, out, Ctx::Other);
            }
        }
        _ => emit_value(item, indent, out, Ctx::Other),
    }
}

fn to_json(phases: &[(String, Node)]) -> serde_json::Value {
    serde_json::Value::Object(
        phases
            .iter()
            .map(|(k, v)| (k.clone(), node_json(v)))
            .collect(),
    )
}

fn node_json(n: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &n.kind {
        NodeKind::Scalar(s) => match s.typed() {
            Typed::Null => J::Null,
            Typed::Bool(b) => J::Bool(b),
            Typed::Int(i) => J::from(i),
            Typed::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            Typed::Str(t) => J::String(t.to_owned()),
        },
        NodeKind::Seq(items) => J::Array(items.iter().map(node_json).collect()),
        NodeKind::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), node_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_order_and_migration() {
        let src = "outbound:\n  - actions:\n      - config: {content: hi}\n        type: custom-response\ninbound:\n  - expressions: [\"req.method == 'GET'\"]\n    name: r\n    actions:\n      - type: deny\n";
        let f = format(src, true).unwrap();
        assert!(f.migrated && !f.had_comments);
        assert_eq!(
            f.text,
            "on_http_request:\n  - name: r\n    expressions:\n      - \"req.method == 'GET'\"\n    actions:\n      - type: deny\non_http_response:\n  - actions:\n      - type: custom-response\n        config:\n          body: hi\n"
        );
        // Formatting is idempotent.
        assert_eq!(format(&f.text, false).unwrap().text, f.text);
    }

    #[test]
    fn detects_comments_and_keeps_blocks() {
        let src = "# top\non_http_request:\n  - expressions:\n      - |\n        a == '#x' &&\n        b\n    actions:\n      - type: deny\n";
        let f = format(src, false).unwrap();
        assert!(f.had_comments);
        assert!(
            f.text
                .contains("      - |\n        a == '#x' &&\n        b\n")
        );
    }

    #[test]
    fn refuses_documents_that_are_not_policies() {
        assert_eq!(
            format("version: 3\nendpoints: []\n", false),
            Err(FormatError::NotAPolicy)
        );
        assert_eq!(format("- a\n", false), Err(FormatError::NotAPolicy));
    }

    #[test]
    fn json_stays_json() {
        let f = format(
            "{\"on_http_request\": [{\"actions\": [{\"type\": \"deny\"}]}]}",
            false,
        )
        .unwrap();
        assert!(f.text.starts_with("{\n  \"on_http_request\""));
    }
}
