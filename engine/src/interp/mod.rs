//! The reference interpreter: a plain tree-walking evaluator with exact CEL semantics. It is the
//! oracle the compiled evaluator is checked against.

pub mod ext;
