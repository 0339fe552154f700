//! Wicket's engine: the reference CEL interpreter (the semantic oracle) and, built on it, the
//! policy compiler and hot-path evaluator.

pub mod actions;
pub mod compile;
pub mod error;
pub mod eval;
#[doc(hidden)]
pub mod fuzz;
pub mod interp;
pub mod program;
pub mod value;

pub use compile::{CompileError, compile};
pub use error::EvalError;
pub use program::{Decision, Effect, Outcome, Program, RequestView, Scratch};
pub use value::Value;
