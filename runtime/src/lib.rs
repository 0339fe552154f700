//! The Wicket runtime: edge, agent, tunnel, credentials.

pub mod admin;
pub mod credentials;
