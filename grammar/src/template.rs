//! Templates: strings with `${…}` interpolations, as used by policy action fields.
//!
//! A template is literal text with CEL expressions embedded as `${expr}`. The expression
//! extends to the matching `}`: braces nest (`${ {'a': 1}['a'] }`), and braces inside string
//! literals, backtick-quoted names and `//` comments do not count (`${ {'a': '}'}['a'] }`).
//!
//! **Escape:** `$${` stands for a literal `${` (no interpolation). No other sequence is special:
//! a `$` not followed by `{` is literal text, and so is a lone `}`. (As with Terraform's same
//! escape, a literal `$` directly before an interpolation cannot be written as `$${x}`, which
//! is the text `${x}`; write `${'$'}${x}`.)
//!
//! Expression spans are relative to the whole template string, so a caller that knows where
//! the string starts in its file can map them there.
//!
//! ```
//! use wicket_grammar::template::{TemplatePart, parse_template};
//!
//! let t = parse_template("Hello ${req.user}! Cost: $${5}").unwrap();
//! assert_eq!(t.parts().len(), 3);
//! let TemplatePart::Expr { expr, span } = &t.parts()[1] else { panic!() };
//! assert_eq!(span.range(), 6..17);
//! assert_eq!(expr.span.range(), 8..16); // `req.user`, relative to the whole string
//! let TemplatePart::Text { text, .. } = &t.parts()[2] else { panic!() };
//! assert_eq!(text, "! Cost: ${5}");
//! ```

use crate::ast::{Expr, Span};
use crate::error::ParseError;
use crate::lexer;
use crate::parser::{ParseOptions, parse_range};

/// A parsed template: literal text and interpolated expressions, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

/// One part of a [`Template`].
#[derive(Clone, Debug, PartialEq)]
pub enum TemplatePart {
    /// Literal text, with `$${` already turned into `${`.
    Text {
        /// The text.
        text: String,
        /// Where the text is in the template (escapes included as written).
        span: Span,
    },
    /// An interpolation `${expr}`.
    Expr {
        /// The expression; its spans are relative to the whole template string.
        expr: Expr,
        /// The span of the whole interpolation, `${` and `}` included.
        span: Span,
    },
}

impl TemplatePart {
    /// Where the part is in the template.
    #[must_use]
    pub fn span(&self) -> Span {
        match self {
            TemplatePart::Text { span, .. } | TemplatePart::Expr { span, .. } => *span,
        }
    }
}

impl Template {
    /// The parts, in order. Adjacent text is merged; empty text parts are omitted, so the
    /// empty template has no parts.
    #[must_use]
    pub fn parts(&self) -> &[TemplatePart] {
        &self.parts
    }

    /// The parts, by value.
    #[must_use]
    pub fn into_parts(self) -> Vec<TemplatePart> {
        self.parts
    }

    /// Whether the template is exactly one interpolation and nothing else (`"${expr}"`), in
    /// which case its value is the expression's value rather than a string.
    #[must_use]
    pub fn is_single_interpolation(&self) -> bool {
        matches!(self.parts.as_slice(), [TemplatePart::Expr { .. }])
    }

    /// The expression of a single-interpolation template.
    #[must_use]
    pub fn single_expr(&self) -> Option<&Expr> {
        match self.parts.as_slice() {
            [TemplatePart::Expr { expr, .. }] => Some(expr),
            _ => None,
        }
    }

    /// Whether the template has no interpolation at all.
    #[must_use]
    pub fn is_literal(&self) -> bool {
        self.parts
            .iter()
            .all(|p| matches!(p, TemplatePart::Text { .. }))
    }
}

/// Why a template does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `${` without its closing `}`.
    #[error("unterminated `${{`: expected a closing `}}`")]
    Unterminated {
        /// From the `${` to the end of the template.
        span: Span,
    },
    /// The expression inside `${…}` does not parse; spans are relative to the template.
    #[error(transparent)]
    Expr(#[from] ParseError),
}

impl TemplateError {
    /// Where the error is in the template.
    #[must_use]
    pub fn span(&self) -> Span {
        match self {
            TemplateError::Unterminated { span } => *span,
            TemplateError::Expr(e) => e.span,
        }
    }
}

/// Parses a template with the default [`ParseOptions`] for its expressions.
///
/// # Errors
///
/// [`TemplateError::Unterminated`] for a `${` without a matching `}`, and
/// [`TemplateError::Expr`] when an interpolated expression does not parse.
pub fn parse_template(src: &str) -> Result<Template, TemplateError> {
    parse_template_with(src, &ParseOptions::default())
}

/// Parses a template, parsing its expressions with `options`.
///
/// # Errors
///
/// As [`parse_template`].
pub fn parse_template_with(src: &str, options: &ParseOptions) -> Result<Template, TemplateError> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut text_start = 0;
    let mut i = 0;
    let flush = |parts: &mut Vec<TemplatePart>, text: &mut String, start: usize, end: usize| {
        if !text.is_empty() {
            parts.push(TemplatePart::Text {
                text: std::mem::take(text),
                span: span(start, end),
            });
        }
    };
    while let Some(rest) = src.get(i..).filter(|r| !r.is_empty()) {
        if rest.starts_with("$${") {
            if text.is_empty() {
                text_start = i;
            }
            text.push_str("${");
            i += 3;
        } else if rest.starts_with("${") {
            flush(&mut parts, &mut text, text_start, i);
            let expr_start = i + 2;
            let close = find_close(src, i, expr_start)?;
            let expr = parse_range(src, expr_start, close, options)?;
            parts.push(TemplatePart::Expr {
                expr,
                span: span(i, close + 1),
            });
            i = close + 1;
        } else {
            if text.is_empty() {
                text_start = i;
            }
            let c = rest.chars().next().unwrap_or('$');
            text.push(c);
            i += c.len_utf8();
        }
    }
    flush(&mut parts, &mut text, text_start, i);
    Ok(Template { parts })
}

fn span(start: usize, end: usize) -> Span {
    let to = |o: usize| u32::try_from(o).unwrap_or(u32::MAX);
    Span::new(to(start), to(end))
}

/// Finds the `}` closing the interpolation whose expression starts at `start` (the `${` is at
/// `open`), skipping nested braces, strings, quoted names and comments.
fn find_close(src: &str, open: usize, start: usize) -> Result<usize, TemplateError> {
    let unterminated = || TemplateError::Unterminated {
        span: span(open, src.len()),
    };
    let mut depth = 0usize;
    let mut j = start;
    loop {
        let rest = src.get(j..).ok_or_else(unterminated)?;
        let Some(c) = rest.chars().next() else {
            return Err(unterminated());
        };
        match c {
            '}' if depth == 0 => return Ok(j),
            '}' => {
                depth -= 1;
                j += 1;
            }
            '{' => {
                depth += 1;
                j += 1;
            }
            '`' => {
                let end = rest[1..].find('`').ok_or_else(unterminated)?;
                j += end + 2;
            }
            '/' if rest.starts_with("//") => match rest.find(['\n', '\r']) {
                Some(end) => j += end,
                None => return Err(unterminated()),
            },
            '"' | '\'' => j += string_len(src, j, rest)?,
            c if c == '_' || c.is_ascii_alphanumeric() => {
                let word = rest
                    .find(|c: char| c != '_' && !c.is_ascii_alphanumeric())
                    .unwrap_or(rest.len());
                let prefix = &rest[..word];
                let is_prefix = matches!(prefix, "r" | "R" | "b" | "B" | "br" | "bR" | "Br" | "BR")
                    && lexer::string_start(rest).is_some();
                if is_prefix {
                    j += string_len(src, j, rest)?;
                } else {
                    j += word;
                }
            }
            c => j += c.len_utf8(),
        }
    }
}

/// The length of the string literal at `rest` (offset `at` in `src`).
fn string_len(src: &str, at: usize, rest: &str) -> Result<usize, TemplateError> {
    match lexer::string_literal(rest) {
        Ok((after, _)) => Ok(rest.len() - after.len()),
        Err(e) => {
            let _ = src;
            Err(ParseError::new(span(at + e.start, at + e.end), e.message).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::ExprKind;

    fn texts(t: &Template) -> Vec<String> {
        t.parts()
            .iter()
            .map(|p| match p {
                TemplatePart::Text { text, .. } => format!("T:{text}"),
                TemplatePart::Expr { expr, .. } => format!("E:{expr}"),
            })
            .collect()
    }

    #[test]
    fn literal_only() {
        let t = parse_template("plain $ text }").unwrap();
        assert_eq!(texts(&t), ["T:plain $ text }"]);
        assert!(t.is_literal());
        assert!(!t.is_single_interpolation());
        assert!(parse_template("").unwrap().parts().is_empty());
    }

    #[test]
    fn escape_gives_literal_dollar_brace() {
        let t = parse_template("a $${b} c").unwrap();
        assert_eq!(texts(&t), ["T:a ${b} c"]);
        assert_eq!(t.parts()[0].span().range(), 0..9);
    }

    #[test]
    fn single_interpolation() {
        let t = parse_template("${1 + 2}").unwrap();
        assert!(t.is_single_interpolation());
        let e = t.single_expr().unwrap();
        assert!(matches!(e.kind, ExprKind::Binary { .. }));
        assert_eq!(e.span.range(), 2..7);
        assert!(!parse_template(" ${1}").unwrap().is_single_interpolation());
    }

    #[test]
    fn braces_and_quotes_nest() {
        let src = "x${ {'a': '}'}['a'] }y${\"}\"}";
        let t = parse_template(src).unwrap();
        assert_eq!(
            texts(&t),
            ["T:x", "E:{\"a\": \"}\"}[\"a\"]", "T:y", "E:\"}\""]
        );
        let TemplatePart::Expr { expr, span } = &t.parts()[1] else {
            panic!()
        };
        assert_eq!(&src[span.range()], "${ {'a': '}'}['a'] }");
        assert_eq!(&src[expr.span.range()], "{'a': '}'}['a']");
        let t = parse_template("${r'}' + b\"}\" + '''}'''}").unwrap();
        assert!(t.is_single_interpolation());
        let t = parse_template("${a.`b c`}").unwrap();
        assert!(t.is_single_interpolation());
    }

    #[test]
    fn unterminated_is_an_error_with_a_span() {
        let err = parse_template("ab ${ {1: 2} ").unwrap_err();
        assert!(matches!(err, TemplateError::Unterminated { .. }));
        assert_eq!(err.span().range(), 3..13);
        let err = parse_template("${'}").unwrap_err();
        assert_eq!(err.span().range(), 2..4);
    }

    #[test]
    fn expression_errors_have_template_spans() {
        let err = parse_template("abc ${1 +} def").unwrap_err();
        let TemplateError::Expr(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(e.span.range(), 9..9);
        let err = parse_template("${}").unwrap_err();
        assert_eq!(err.span().range(), 2..2);
    }
}
