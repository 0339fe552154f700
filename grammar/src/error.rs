//! Parse errors.

use crate::ast::Span;

/// A syntax error: where it is, and what was expected there.
///
/// `message` is a complete sentence fragment in the project's style (lowercase start, user
/// input in backticks), for example ``expected `)`, found `]` ``.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct ParseError {
    /// Byte range of the offending text in the source (empty at end of input).
    pub span: Span,
    /// What went wrong: what was expected and what was found.
    pub message: String,
    /// What the parser would have accepted at `span`, when known (e.g. `` `)` ``,
    /// `an expression`).
    expected: Option<String>,
}

impl ParseError {
    /// An error at `span` with a free-form message.
    #[must_use]
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
            expected: None,
        }
    }

    /// An "expected X, found Y" error; `found` is a short description of what is at `span`.
    #[must_use]
    pub(crate) fn expecting(span: Span, expected: impl Into<String>, found: &str) -> Self {
        let expected = expected.into();
        Self {
            span,
            message: format!("expected {expected}, found {found}"),
            expected: Some(expected),
        }
    }

    /// What was expected at the error position, when the error is of that kind.
    #[must_use]
    pub fn expected(&self) -> Option<&str> {
        self.expected.as_deref()
    }
}
