//! Scaffolding shared by the runtime's integration tests: a real edge, agent and upstreams on
//! 127.0.0.1 with generated certificates, and the clients that drive them.
//!
//! - [`stack`]: the edge configuration, edge and agent start-up, waiting for endpoints, and
//!   [`Stack`], one builder for "edge + agent + endpoints with policies";
//! - [`tls`]: the generated dev CA and edge certificate ([`Certs`]), client PKI (CAs, leaf
//!   identities) and rustls client configurations trusting the dev CA;
//! - [`upstream`]: HTTP upstreams on 127.0.0.1:0 ([`serve`], the tagged test [`upstream`]) and
//!   TCP ones ([`tcp_echo`], [`dead_port`]);
//! - [`oidc`]: pieces of the identity providers tests run (ES256 keys and JWTs, JWKs, PKCE,
//!   client credentials, forms, JSON responses);
//! - [`net`]: timeouts ([`within`]), HTTP/1.1 and HTTP/2 clients over plain TCP or TLS, and raw
//!   stream helpers.
//!
//! Use it from a test file with `mod support;` and `use support::*;` (from `tunnel/main.rs`,
//! with `#[path = "../support/mod.rs"]`).

// Every test binary compiles this module on its own and uses only a part of it, so unused
// items are expected here. It is a harness: a failure in it should fail the test loudly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod net;
pub mod oidc;
pub mod stack;
pub mod tls;
pub mod upstream;

// A test binary that needs nothing from one of these would otherwise warn.
#[allow(unused_imports)]
pub use {net::*, oidc::*, stack::*, tls::*, upstream::*};
