//! Traffic policy phases.

use std::fmt;

/// A phase of a traffic policy document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// `on_tcp_connect`: once per accepted connection.
    TcpConnect,
    /// `on_http_request`: per HTTP request, before the upstream.
    HttpRequest,
    /// `on_http_response`: per HTTP response, before the client.
    HttpResponse,
    /// `on_event_stream_message`: per server-sent event message.
    EventStreamMessage,
}

impl Phase {
    /// Every phase, in evaluation order.
    pub const ALL: [Phase; 4] = [
        Phase::TcpConnect,
        Phase::HttpRequest,
        Phase::HttpResponse,
        Phase::EventStreamMessage,
    ];

    /// The document key of the phase.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::TcpConnect => "on_tcp_connect",
            Phase::HttpRequest => "on_http_request",
            Phase::HttpResponse => "on_http_response",
            Phase::EventStreamMessage => "on_event_stream_message",
        }
    }

    /// The phase for a document key.
    #[must_use]
    pub fn from_key(key: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == key)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
