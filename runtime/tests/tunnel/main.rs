//! End-to-end tests: a real edge, agent and upstreams on 127.0.0.1 with generated
//! certificates, driven by real HTTP/1.1, HTTP/2, WebSocket, TCP and TLS clients.

mod control;
mod http;
mod limits;
mod raw;
mod resilience;
#[path = "../support/mod.rs"]
mod support;
