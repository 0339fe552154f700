//! The one place where the loader hands CEL text to the checker: conditions, `${…}` templates
//! and whole-CEL fields. Issues come back with spans relative to the text; the caller maps
//! them into the file.

use crate::codes;
use crate::diagnostic::{ExprIssue, Span};
use crate::phase::Phase;
use crate::source::offset_u32;

/// What a CEL text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CelKind {
    /// An entry of `expressions`: a `bool` expression.
    Condition,
    /// A whole-CEL field that must be `bool` (`http-request.retry_condition`).
    BoolField,
    /// A whole-CEL field of any type (`rate-limit.bucket_key[]`).
    AnyField,
    /// A string field with `${…}` interpolations.
    Template,
}

/// Checks `src` as `kind` in `phase`.
pub(crate) fn check(kind: CelKind, src: &str, phase: Phase) -> Vec<ExprIssue> {
    let _ = phase;
    match kind {
        CelKind::Condition | CelKind::BoolField | CelKind::AnyField => interpolation_in_expr(src),
        CelKind::Template => template_structure(src),
    }
}

fn issue(span: Span, message: String, help: Option<&str>) -> ExprIssue {
    ExprIssue {
        code: codes::BAD_TEMPLATE.code,
        ngrok_code: codes::BAD_TEMPLATE.ngrok,
        severity: codes::BAD_TEMPLATE.severity,
        message,
        span,
        labels: Vec::new(),
        help: help.map(str::to_owned),
    }
}

/// `${…}` is template syntax, not CEL: it has no place in a whole expression.
fn interpolation_in_expr(src: &str) -> Vec<ExprIssue> {
    src.match_indices("${")
        .take(1)
        .map(|(i, _)| {
            let start = offset_u32(i);
            issue(
                Span::new(start, start + 2),
                "`${…}` interpolation inside a CEL expression".into(),
                Some(
                    "expressions are CEL already: write the inner expression without `${` and `}`",
                ),
            )
        })
        .collect()
}

/// Every `${` must be closed by a `}` that balances the braces inside.
fn template_structure(src: &str) -> Vec<ExprIssue> {
    let bytes = src.as_bytes();
    let mut issues = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'{' {
            match template_end(src, i + 2) {
                Some(end) => {
                    if src[i + 2..end].trim().is_empty() {
                        let s = offset_u32(i);
                        issues.push(issue(
                            Span::new(s, offset_u32(end + 1)),
                            "empty `${}` interpolation".into(),
                            None,
                        ));
                    }
                    i = end + 1;
                }
                None => {
                    let s = offset_u32(i);
                    issues.push(issue(
                        Span::new(s, s + 2),
                        "unclosed `${` interpolation".into(),
                        Some("close it with `}`; braces inside must balance"),
                    ));
                    break;
                }
            }
        } else {
            i += 1;
        }
    }
    issues
}

/// Byte index of the `}` that closes an interpolation whose body starts at `from`, skipping
/// braces inside CEL string literals.
pub(crate) fn template_end(src: &str, from: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == b'\\' {
                i += 1;
            } else if b == q {
                quote = None;
            }
        } else {
            match b {
                b'\'' | b'"' => quote = Some(b),
                b'{' => depth += 1,
                b'}' if depth == 0 => return Some(i),
                b'}' => depth -= 1,
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Whether `src` contains an interpolation.
pub(crate) fn has_interpolation(src: &str) -> bool {
    src.contains("${")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert!(
            check(
                CelKind::Template,
                "a ${req.url.path} b ${'}'}",
                Phase::HttpRequest
            )
            .is_empty()
        );
        let issues = check(CelKind::Template, "x ${conn.client_ip", Phase::HttpRequest);
        assert_eq!(issues[0].span, Span::new(2, 4));
        assert_eq!(
            check(CelKind::Template, "${ }", Phase::HttpRequest).len(),
            1
        );
    }

    #[test]
    fn interpolation_in_condition() {
        let issues = check(CelKind::Condition, "a == ${vars.x}", Phase::HttpRequest);
        assert_eq!(issues[0].span, Span::new(5, 7));
    }
}
