//! Evaluation errors. CEL errors are values of the language: they flow through `&&`, `||` and
//! `?:` by CEL's absorption rules and end a policy decision closed when they reach the top.

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
}
