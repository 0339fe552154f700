//! The Wicket runtime: edge, agent, tunnel, credentials.
