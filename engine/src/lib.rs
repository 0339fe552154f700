//! Wicket's engine: the reference CEL interpreter (the semantic oracle) and, built on it, the
//! policy compiler and hot-path evaluator.

pub mod error;
pub mod interp;
pub mod value;

pub use error::EvalError;
pub use value::Value;
