//! Wicket traffic policy documents: loading YAML/JSON with positions, the typed document
//! model, the variable and function environment, CEL type checking, lints and diagnostics.

pub mod phase;

pub use phase::Phase;
pub mod check;
pub mod diagnostic;
pub mod env;

pub use diagnostic::{Diagnostic, ExprIssue, FileId, Label, Severity};

pub mod codes;
pub mod docs;
pub mod format;
pub mod jsonschema;
pub mod lint;
pub mod lints;
pub mod model;
pub mod render;
pub mod source;
pub mod suggest;
pub mod yaml;
