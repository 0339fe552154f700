//! Invariant checks shared by the fuzz targets (`fuzz/`) and their regression tests
//! (`grammar/tests/fuzz_regressions.rs`). Not part of the stable API.
//!
//! Each function panics when an invariant is violated: that is what a fuzzer detects.

use crate::ast::{Expr, Span};
use crate::template::{TemplateError, TemplatePart, parse_template};
use crate::{ParseOptions, parse_with, print};

/// Checks the expression parser on arbitrary bytes: it never panics; error spans lie within
/// the input on character boundaries; every span of a parsed tree does too; the printed form
/// re-parses to the same tree; parsing without macros never panics either.
///
/// # Panics
///
/// When one of those invariants does not hold.
pub fn check_parse_expr(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let opts = ParseOptions::default();
    match parse_with(src, &opts) {
        Ok(e) => {
            check_tree_spans(src, &e);
            let printed = print(&e);
            match parse_with(
                &printed,
                &ParseOptions {
                    max_len: usize::MAX,
                    ..opts.clone()
                },
            ) {
                Ok(again) => assert!(
                    again.eq_ignoring_spans(&e),
                    "round trip changed the tree:\n  source:  {src:?}\n  printed: {printed:?}\n  before:  {:?}\n  after:   {:?}",
                    e.without_spans(),
                    again.without_spans()
                ),
                Err(err) => panic!(
                    "printed form does not parse:\n  source:  {src:?}\n  printed: {printed:?}\n  error:   {err}"
                ),
            }
        }
        Err(err) => check_span(src, err.span, "error"),
    }
    let no_macros = ParseOptions {
        macros: false,
        ..opts
    };
    if let Err(err) = parse_with(src, &no_macros) {
        check_span(src, err.span, "error without macros");
    }
}

/// Checks the template parser on arbitrary bytes: it never panics; spans lie within the
/// input; parts are in order, do not overlap, and interpolations are delimited by `${` and
/// `}` with their expression inside.
///
/// # Panics
///
/// When one of those invariants does not hold.
pub fn check_parse_template(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match parse_template(src) {
        Ok(t) => {
            let mut end = 0;
            for part in t.parts() {
                let span = part.span();
                check_span(src, span, "template part");
                assert!(span.start as usize >= end, "overlapping parts in {src:?}");
                end = span.end as usize;
                if let TemplatePart::Expr { expr, span } = part {
                    let text = &src[span.range()];
                    assert!(text.starts_with("${") && text.ends_with('}'), "{text:?}");
                    assert!(
                        expr.span.start >= span.start + 2 && expr.span.end < span.end,
                        "expression span {:?} outside {span:?} in {src:?}",
                        expr.span
                    );
                    check_tree_spans(src, expr);
                }
            }
        }
        Err(TemplateError::Unterminated { span }) => check_span(src, span, "unterminated"),
        Err(err) => check_span(src, err.span(), "template error"),
    }
}

fn check_span(src: &str, span: Span, what: &str) {
    assert!(
        span.start <= span.end
            && src.is_char_boundary(span.start as usize)
            && src.is_char_boundary(span.end as usize),
        "{what} span {span:?} not within the input ({} bytes): {src:?}",
        src.len()
    );
}

fn check_tree_spans(src: &str, e: &Expr) {
    let mut e = e.clone();
    e.map_spans(&mut |span| {
        check_span(src, span, "node");
        span
    });
}
