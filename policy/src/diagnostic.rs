//! Diagnostics: problems found in a policy, kept as data. The CLI renders them (human, json,
//! github, sarif); the library never prints.

pub use wicket_grammar::Span;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The policy is wrong and will not be enforced.
    Error,
    /// The policy is accepted but probably not what the author meant.
    Warning,
}

/// Identifies a loaded source file in a [`crate::diagnostic::Diagnostic`] label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// A span in a file, with an optional message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// The file.
    pub file: FileId,
    /// Byte range in the file.
    pub span: Span,
    /// What this label says about the range.
    pub message: Option<String>,
}

/// One problem in a policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code: `E…` for errors, `W…` for warnings.
    pub code: &'static str,
    /// The corresponding ngrok error code (`ERR_NGROK_<n>`), where one exists.
    pub ngrok_code: Option<u32>,
    /// Error or warning.
    pub severity: Severity,
    /// One-line message: lowercase start, no trailing period, user input in backticks.
    pub message: String,
    /// Where the problem is.
    pub primary: Label,
    /// Further places that explain it.
    pub labels: Vec<Label>,
    /// How to fix it.
    pub help: Option<String>,
}

/// A problem inside one CEL expression or template, with a span relative to the expression
/// (or template) string. The loader maps it into the file to make a [`Diagnostic`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprIssue {
    /// Stable code, as for [`Diagnostic::code`].
    pub code: &'static str,
    /// The corresponding ngrok error code, if any.
    pub ngrok_code: Option<u32>,
    /// Error or warning.
    pub severity: Severity,
    /// One-line message.
    pub message: String,
    /// Byte range in the expression string.
    pub span: Span,
    /// Secondary ranges in the same expression string.
    pub labels: Vec<(Span, String)>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic for `code` at `span` of `file`; severity and ngrok code come from the
    /// code table.
    #[must_use]
    pub fn new(
        code: crate::codes::Code,
        file: FileId,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            code: code.code,
            ngrok_code: code.ngrok,
            severity: code.severity,
            message: message.into(),
            primary: Label {
                file,
                span,
                message: None,
            },
            labels: Vec::new(),
            help: None,
        }
    }

    /// Adds a help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a message to the primary label.
    #[must_use]
    pub fn with_primary_message(mut self, message: impl Into<String>) -> Self {
        self.primary.message = Some(message.into());
        self
    }

    /// Adds a secondary label.
    #[must_use]
    pub fn with_label(mut self, file: FileId, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            file,
            span,
            message: Some(message.into()),
        });
        self
    }

    /// Whether this is an error.
    #[must_use]
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}
