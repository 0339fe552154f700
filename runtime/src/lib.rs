//! The Wicket runtime: edge, agent, tunnel, credentials.

pub mod actions;
pub mod admin;
pub mod credentials;

pub mod agent;
pub mod auth;
pub mod body;
pub mod compress;
pub mod duration;
pub mod edge;
pub mod engine_policy;
#[doc(hidden)]
pub mod fuzz;
pub mod io;
pub mod ja4;
pub mod metrics;
pub mod pages;
pub mod policy_hook;
pub mod proto;
pub mod proxy_protocol;
pub mod quickstart;
pub mod routing;
pub mod sni;
pub mod tls;
