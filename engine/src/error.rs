//! Evaluation errors. CEL errors are values of the language: they flow through `&&`, `||` and
//! `?:` by CEL's absorption rules and end a policy decision closed when they reach the top.

use std::collections::BTreeSet;
use std::fmt;

use thiserror::Error;

/// An error raised while evaluating a CEL expression.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EvalError {
    /// No overload of the function accepts these argument types.
    #[error("no matching overload for `{function}`")]
    NoMatchingOverload {
        /// The function or operator name.
        function: String,
    },
    /// Integer division by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// Integer modulus by zero.
    #[error("modulus by zero")]
    ModulusByZero,
    /// Integer arithmetic or a conversion left the type's range.
    #[error("return error for overflow")]
    Overflow,
    /// A map has no entry for the key.
    #[error("no such key: {0}")]
    NoSuchKey(String),
    /// A value has no field of that name.
    #[error("no such attribute: {0}")]
    NoSuchField(String),
    /// A name resolves to no variable, function or type.
    #[error("undeclared reference to `{0}`")]
    UndeclaredReference(String),
    /// A list index outside the list.
    #[error("index out of range: {0}")]
    IndexOutOfRange(i64),
    /// Any other invalid argument (bad conversion input, bad regex, bad time zone, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// A map literal or map-producing operation repeats a key.
    #[error("repeated key: {0}")]
    DuplicateKey(String),
    /// Evaluation exceeded a resource limit (nesting depth, iterations, value size).
    #[error("{0}")]
    LimitExceeded(String),
    /// The expression uses a feature the interpreter does not support (message construction,
    /// protobuf types).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Not an error but an *unknown* result (partial evaluation): the value depends on
    /// attributes the activation does not know. It travels on the error channel because it
    /// flows like one: strict operations pass it on, and `&&`, `||`, `?:` and the comprehensions
    /// absorb it by the same rules; where an unknown and an error meet, the unknown wins.
    #[error("unknown value of {0}")]
    Unknown(UnknownSet),
}

impl EvalError {
    /// Whether this is an unknown result rather than an error.
    #[must_use]
    pub fn is_unknown(&self) -> bool {
        matches!(self, EvalError::Unknown(_))
    }
}

/// The attributes (variable names, with any selected fields: `request.headers`) an unknown
/// result depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnknownSet {
    /// The unknown attributes, sorted.
    pub attributes: BTreeSet<String>,
}

impl UnknownSet {
    /// The set of one attribute.
    #[must_use]
    pub fn of(attribute: &str) -> Self {
        Self {
            attributes: std::iter::once(attribute.to_owned()).collect(),
        }
    }

    /// The union of two sets.
    #[must_use]
    pub fn union(&self, other: &UnknownSet) -> UnknownSet {
        UnknownSet {
            attributes: self.attributes.union(&other.attributes).cloned().collect(),
        }
    }
}

impl fmt::Display for UnknownSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, attribute) in self.attributes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{attribute}`")?;
        }
        Ok(())
    }
}
