//! The Wicket runtime: edge, agent, tunnel, credentials.

pub mod credentials;
