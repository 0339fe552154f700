//! Shared helpers for the Wicket benchmarks.
