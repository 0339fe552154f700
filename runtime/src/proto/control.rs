//! Messages on the control stream, each one a [`frame`](super::frame). The agent sends
//! [`AgentMessage`]s, the edge [`EdgeMessage`]s; both directions are independent.

use serde::{Deserialize, Serialize};

/// Largest control message accepted, in bytes (policies travel here).
pub const MAX_CONTROL_LEN: usize = 1024 * 1024;

/// The protocol an endpoint serves to the public.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EndpointProto {
    /// Plain HTTP on the edge's HTTP listener.
    Http,
    /// HTTPS terminated at the edge.
    Https,
    /// Raw TCP on an edge port.
    Tcp,
    /// TLS passed through unterminated, routed by SNI.
    Tls,
}

impl EndpointProto {
    /// The URL scheme of this protocol.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// A traffic policy document as sent by the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    /// Where the policy came from (file name or `inline`), for diagnostics.
    pub origin: String,
    /// The YAML or JSON text.
    pub text: String,
}

/// A request to serve an endpoint through this session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BindRequest {
    /// Agent-chosen correlation id, echoed in the result.
    pub request_id: u64,
    /// Endpoint name from the agent configuration.
    pub name: String,
    /// Requested public URL; `None` asks the edge to assign one for `proto`.
    pub url: Option<String>,
    /// Public protocol.
    pub proto: EndpointProto,
    /// The endpoint's traffic policy, if any.
    #[serde(default)]
    pub policy: Option<PolicySource>,
}

/// Messages from the agent to the edge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMessage {
    /// Serve an endpoint.
    Bind(BindRequest),
    /// Stop serving an endpoint.
    Unbind {
        /// Correlation id.
        request_id: u64,
        /// The endpoint id from the bind result.
        endpoint_id: String,
    },
    /// Replace an endpoint's policy without rebinding.
    UpdatePolicy {
        /// Correlation id.
        request_id: u64,
        /// The endpoint id from the bind result.
        endpoint_id: String,
        /// The new policy; `None` removes it.
        policy: Option<PolicySource>,
    },
}

/// Why the edge refused a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// Machine-readable error code, e.g. `ERR_WICKET_4300`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Lint diagnostics when a policy was refused, rendered as text.
    #[serde(default)]
    pub diagnostics: Vec<String>,
}

/// Messages from the edge to the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EdgeMessage {
    /// The endpoint is live.
    Bound {
        /// Correlation id of the bind.
        request_id: u64,
        /// Edge-assigned endpoint id, sent on every stream for this endpoint.
        endpoint_id: String,
        /// The public URL.
        url: String,
    },
    /// A bind, unbind or policy update was refused.
    Refused {
        /// Correlation id of the request.
        request_id: u64,
        /// The reason.
        refusal: Refusal,
    },
    /// An unbind or policy update succeeded.
    Done {
        /// Correlation id of the request.
        request_id: u64,
    },
    /// The edge is closing the session (restart, revocation); the agent should drain and,
    /// unless `reconnect` is false, reconnect.
    Shutdown {
        /// Why.
        reason: String,
        /// Whether reconnecting makes sense (false after a revocation).
        reconnect: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let m = AgentMessage::Bind(BindRequest {
            request_id: 7,
            name: "web".into(),
            url: Some("https://a.example.test".into()),
            proto: EndpointProto::Https,
            policy: None,
        });
        let s = serde_json::to_string(&m).unwrap();
        assert!(
            s.contains(r#""type":"bind""#) && s.contains(r#""proto":"https""#),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<AgentMessage>(&s).unwrap(), m);
        let e = EdgeMessage::Refused {
            request_id: 7,
            refusal: Refusal {
                code: "ERR_WICKET_4300".into(),
                message: "nope".into(),
                diagnostics: vec![],
            },
        };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<EdgeMessage>(&s).unwrap(), e);
    }

    #[test]
    fn unknown_message_types_are_rejected() {
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"explode"}"#).is_err());
        assert!(serde_json::from_str::<EdgeMessage>(r#"{"type":"done"}"#).is_err());
    }
}
