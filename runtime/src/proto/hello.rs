//! The first exchange on a tunnel connection, right after TLS: the agent sends a [`Hello`], the
//! edge authenticates it and answers with a [`HelloReply`] before any session state exists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Largest hello or hello reply payload accepted, in bytes.
pub const MAX_HELLO_LEN: usize = 16 * 1024;

/// The agent's opening message.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Tunnel protocol version the agent speaks.
    pub version: u16,
    /// The agent's authtoken.
    pub authtoken: String,
    /// Free-form agent metadata (hostname, build, operator labels).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Token from a previous session's accept reply, to reclaim its endpoints.
    #[serde(default)]
    pub resume_token: Option<String>,
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the authtoken.
        f.debug_struct("Hello")
            .field("version", &self.version)
            .field("authtoken", &"<redacted>")
            .field("metadata", &self.metadata)
            .field(
                "resume_token",
                &self.resume_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The edge's answer to a [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum HelloReply {
    /// The session is established; HTTP/2 starts next.
    Accept {
        /// Identifier of the new session (for logs).
        session_id: String,
        /// Token to present in the next hello after a reconnect.
        resume_token: String,
    },
    /// The connection is refused and will be closed.
    Refuse {
        /// Machine-readable error code, e.g. `ERR_WICKET_4100`.
        code: String,
        /// Human-readable reason.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::{Decoder, encode};

    #[test]
    fn hello_round_trips_and_debug_hides_the_token() {
        let h = Hello {
            version: 1,
            authtoken: "secret-token".into(),
            metadata: BTreeMap::from([("host".into(), "cam-42".into())]),
            resume_token: None,
        };
        let mut d = Decoder::new(MAX_HELLO_LEN);
        d.extend(&encode(&h, MAX_HELLO_LEN).unwrap());
        assert_eq!(d.next_message::<Hello>().unwrap(), Some(h.clone()));
        assert!(!format!("{h:?}").contains("secret"));
    }

    #[test]
    fn reply_uses_a_result_tag() {
        let r = HelloReply::Refuse {
            code: "ERR_WICKET_4100".into(),
            reason: "unknown authtoken".into(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.starts_with(r#"{"result":"refuse""#), "{json}");
        assert_eq!(serde_json::from_str::<HelloReply>(&json).unwrap(), r);
        assert!(serde_json::from_str::<HelloReply>(r#"{"result":"maybe"}"#).is_err());
    }
}
