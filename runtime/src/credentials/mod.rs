//! Fleet credentials: authtokens, ACL bindings, the credential store, live sessions and the
//! audit log.
//!
//! # Layers
//!
//! * [`CredentialStore`] is the persistence boundary. It is a **synchronous** trait: the default
//!   implementation, [`SqliteStore`], talks to an embedded SQLite file and every call is a short
//!   blocking transaction. Async callers go through [`CredentialService`], which runs store calls
//!   on tokio's blocking pool (`spawn_blocking`) so the reactor never waits on disk. A shared
//!   server database (for several edges) can implement the same trait later.
//! * [`SessionRegistry`] holds the live agent sessions of one edge (in memory), enforces the
//!   per-credential session cap atomically and can signal sessions to close.
//! * [`CredentialService`] ties both together for the edge: [`CredentialService::authenticate`]
//!   checks a token (revocation, grace expiry, source CIDRs, session cap) and
//!   [`CredentialService::revoke`] revokes in the store and then signals every live session of
//!   the credential before it returns.
//! * [`StoreAuthenticator`] plugs all of this into the edge (`crate::auth::Authenticator`):
//!   token checks at the hello, ACL checks on every bind, and a session lease that enforces
//!   source CIDRs and the session cap and closes the session when it is signalled.
//!
//! # Tokens
//!
//! Tokens are `wkt_` + 256 random bits (base64url). The store keeps only
//! `HMAC-SHA256(key, token)`, with a per-database key in `<data_dir>/wicket.key` (mode 0600),
//! and compares hashes in constant time. A token is returned exactly once, by create and rotate.
//!
//! # Rotation
//!
//! Rotation creates a **new credential row** (new id, new token, same description, metadata,
//! ACL, source CIDRs and session cap) linked to the old one (`rotated_from` / `rotated_to`). The
//! old credential gets `expires_at = now + grace`; it keeps working until then and is refused
//! afterwards, whether or not [`CredentialStore::expire_graces`] has run yet. That call (run
//! periodically by the edge, see [`CredentialService::spawn_maintenance`]) marks expired
//! credentials revoked and writes their audit records; the service then closes their sessions.
//! A grace of zero revokes the old credential immediately. Separate rows keep the audit trail,
//! last-used times and live sessions attributable to exactly one token.

mod acl;
mod audit;
mod edge_auth;
mod service;
mod sessions;
mod sqlite;
mod time;
mod token;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

pub use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use acl::{Acl, AclDenied, AclError, AclRule, EndpointUrl, MAX_ACL_RULES, Scheme};
pub use audit::{AuditAction, AuditFilter, AuditRecord, NewAuditRecord};
pub use edge_auth::StoreAuthenticator;
pub use service::{AuthError, AuthenticatedCredential, CredentialService};
pub use sessions::{
    KillReason, SessionHandle, SessionId, SessionInfo, SessionLimitReached, SessionRegistry,
};
pub use sqlite::{DB_FILE_NAME, KEY_FILE_NAME, SqliteStore};
pub use time::{TimeParseError, Timestamp, format_duration, parse_duration};
pub use token::{CredentialId, TOKEN_PREFIX, Token};

/// Free-form JSON object attached to a credential (device id, site, owner …).
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// Longest accepted description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 255;

/// Largest accepted metadata object, in bytes of compact JSON.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Largest number of allowed source CIDRs on one credential.
pub const MAX_ALLOWED_CIDRS: usize = 256;

/// A stored credential. Never contains the token or its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    /// The id (`cr_…`).
    pub id: CredentialId,
    /// Operator-chosen description.
    pub description: String,
    /// Operator-chosen metadata.
    pub metadata: Metadata,
    /// Which endpoints the token may bind (empty: any).
    pub acl: Acl,
    /// Source networks agent sessions may come from (empty: any).
    #[serde(with = "cidr_list")]
    pub allowed_cidrs: Vec<IpNet>,
    /// Cap on concurrent sessions (`None`: no cap).
    pub max_sessions: Option<u32>,
    /// When the credential was created.
    pub created_at: Timestamp,
    /// When the token last authenticated a session.
    pub last_used_at: Option<Timestamp>,
    /// When the credential was revoked (directly, or when its rotation grace ended).
    pub revoked_at: Option<Timestamp>,
    /// When a pending rotation grace ends; the token is refused from then on.
    pub expires_at: Option<Timestamp>,
    /// The credential this one replaced by rotation.
    pub rotated_from: Option<CredentialId>,
    /// The credential that replaced this one by rotation.
    pub rotated_to: Option<CredentialId>,
}

impl Credential {
    /// The credential's state at `now`.
    pub fn status(&self, now: Timestamp) -> CredentialStatus {
        match (self.revoked_at, self.expires_at) {
            (Some(_), _) => CredentialStatus::Revoked,
            (None, Some(until)) if until <= now => CredentialStatus::Revoked,
            (None, Some(until)) => CredentialStatus::Grace { until },
            (None, None) => CredentialStatus::Active,
        }
    }

    /// Whether `ip` is allowed to open sessions with this credential.
    pub fn allows_source(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.allowed_cidrs.is_empty() || self.allowed_cidrs.iter().any(|net| net.contains(&ip))
    }
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, seen on dual-stack listeners) to IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The lifecycle state of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialStatus {
    /// Usable.
    Active,
    /// Rotated; usable until `until`.
    Grace {
        /// When the grace period ends.
        until: Timestamp,
    },
    /// Refused.
    Revoked,
}

impl fmt::Display for CredentialStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Active => f.write_str("active"),
            Self::Grace { until } => write!(f, "grace until {until}"),
            Self::Revoked => f.write_str("revoked"),
        }
    }
}

/// The fields of a credential to create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// ACL rules.
    #[serde(default)]
    pub acl: Acl,
    /// Allowed source networks.
    #[serde(default, with = "cidr_list")]
    pub allowed_cidrs: Vec<IpNet>,
    /// Session cap.
    #[serde(default)]
    pub max_sessions: Option<u32>,
}

/// A partial update; `None` fields are left unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialUpdate {
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New metadata (replaces the whole object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// New ACL (replaces the whole list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
    /// New allowed source networks (replaces the whole list).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "cidr_list_opt"
    )]
    pub allowed_cidrs: Option<Vec<IpNet>>,
    /// New session cap; `Some(None)` (JSON `null`) removes the cap.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub max_sessions: Option<Option<u32>>,
}

impl CredentialUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Parses a CIDR (`10.0.0.0/8`) or a single address (`192.0.2.7`, meaning `/32` or `/128`).
pub fn parse_cidr(text: &str) -> Result<IpNet, StoreError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| StoreError::Invalid(format!("`{text}` is not a CIDR or IP address")))
}

/// Serialises CIDR lists as strings.
mod cidr_list {
    pub use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &[IpNet],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(value.iter().map(ToString::to_string))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<IpNet>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| super::parse_cidr(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Serialises optional CIDR lists as strings.
mod cidr_list_opt {
    pub use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Vec<IpNet>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(list) => super::cidr_list::serialize(list, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<IpNet>>, D::Error> {
        Option::<Vec<String>>::deserialize(deserializer)?
            .map(|list| {
                list.iter()
                    .map(|text| super::parse_cidr(text).map_err(serde::de::Error::custom))
                    .collect()
            })
            .transpose()
    }
}

/// Distinguishes a missing field from an explicit `null`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Option<u32>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<u32>>, D::Error> {
        Option::<u32>::deserialize(deserializer).map(Some)
    }
}

/// A created (or rotated-in) credential together with its token, which is shown only here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedCredential {
    /// The stored credential.
    pub credential: Credential,
    /// The token; not recoverable later.
    pub token: Token,
}

/// The result of a rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rotation {
    /// The old credential, now revoked or in its grace period.
    pub old: Credential,
    /// The replacement and its token.
    pub new: IssuedCredential,
}

/// Who performs a mutating action, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A name such as `admin-api`, `cli` or `system`.
    pub name: String,
    /// The network address the request came from, if any.
    pub source: Option<String>,
}

impl Actor {
    /// An actor with a name and an optional source address.
    pub fn new(name: impl Into<String>, source: Option<String>) -> Self {
        Self {
            name: name.into(),
            source,
        }
    }

    /// The edge itself (grace expiry and the like).
    pub fn system() -> Self {
        Self::new("system", None)
    }
}

/// A credential store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No credential with that id.
    #[error("no credential with id `{0}`")]
    NotFound(CredentialId),
    /// The change conflicts with the credential's state (already revoked, already rotated).
    #[error("{0}")]
    Conflict(String),
    /// A field value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The database was written by a newer Wicket.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// The hashing key in the data directory does not belong to this database.
    #[error("the token hashing key `{0}` does not match the database (was it replaced?)")]
    KeyMismatch(String),
    /// A stored value could not be decoded.
    #[error("corrupt credential database: {0}")]
    Corrupt(String),
    /// SQLite failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A file in the data directory could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A blocking store task failed to complete.
    #[error("credential store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// A short stable code for the audit log and the admin API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Invalid(_) => "invalid_request",
            Self::SchemaTooNew { .. }
            | Self::KeyMismatch(_)
            | Self::Corrupt(_)
            | Self::Database(_)
            | Self::Io { .. }
            | Self::Task(_) => "internal",
        }
    }
}

/// Persistence for credentials and the audit log. See the module documentation for why it is
/// synchronous. Every mutating method writes its audit record (success or failure) itself, in
/// the same transaction as the change when it succeeds.
pub trait CredentialStore: Send + Sync + fmt::Debug {
    /// Creates a credential with a fresh token.
    fn create(&self, new: NewCredential, actor: &Actor) -> Result<IssuedCredential, StoreError>;

    /// One credential.
    fn get(&self, id: &CredentialId) -> Result<Credential, StoreError>;

    /// Every credential, oldest first.
    fn list(&self) -> Result<Vec<Credential>, StoreError>;

    /// Changes description, metadata, ACL, source CIDRs or session cap.
    fn update(
        &self,
        id: &CredentialId,
        update: CredentialUpdate,
        actor: &Actor,
    ) -> Result<Credential, StoreError>;

    /// Issues a replacement credential and schedules the old one's revocation after `grace`
    /// (immediately when zero).
    fn rotate(
        &self,
        id: &CredentialId,
        grace: Duration,
        actor: &Actor,
    ) -> Result<Rotation, StoreError>;

    /// Revokes a credential now.
    fn revoke(&self, id: &CredentialId, actor: &Actor) -> Result<Credential, StoreError>;

    /// Marks every credential whose grace ended at or before `now` as revoked and returns their
    /// ids.
    fn expire_graces(&self, now: Timestamp) -> Result<Vec<CredentialId>, StoreError>;

    /// The credential whose token is `token`, in whatever state, or `None`.
    fn find_by_token(&self, token: &str) -> Result<Option<Credential>, StoreError>;

    /// Records that a credential authenticated a session at `at`.
    fn mark_used(&self, id: &CredentialId, at: Timestamp) -> Result<(), StoreError>;

    /// Appends one audit record.
    fn append_audit(&self, record: &NewAuditRecord) -> Result<(), StoreError>;

    /// Audit records matching `filter`, oldest first.
    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Checks field limits shared by create and update.
pub(crate) fn validate_fields(
    description: Option<&str>,
    metadata: Option<&Metadata>,
    allowed_cidrs: Option<&[IpNet]>,
    max_sessions: Option<Option<u32>>,
) -> Result<(), StoreError> {
    if let Some(description) = description {
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(StoreError::Invalid(format!(
                "description is longer than {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        if description.chars().any(char::is_control) {
            return Err(StoreError::Invalid(
                "description contains control characters".to_owned(),
            ));
        }
    }
    if let Some(metadata) = metadata {
        let len = serde_json::to_string(metadata)
            .map_err(|e| StoreError::Invalid(format!("metadata: {e}")))?
            .len();
        if len > MAX_METADATA_BYTES {
            return Err(StoreError::Invalid(format!(
                "metadata is {len} bytes of JSON; the limit is {MAX_METADATA_BYTES}"
            )));
        }
    }
    if let Some(cidrs) = allowed_cidrs
        && cidrs.len() > MAX_ALLOWED_CIDRS
    {
        return Err(StoreError::Invalid(format!(
            "too many allowed CIDRs ({}; the limit is {MAX_ALLOWED_CIDRS})",
            cidrs.len()
        )));
    }
    if let Some(Some(0)) = max_sessions {
        return Err(StoreError::Invalid(
            "max_sessions must be at least 1 (omit it for no cap)".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential() -> Credential {
        Credential {
            id: CredentialId::generate(),
            description: String::new(),
            metadata: Metadata::new(),
            acl: Acl::unrestricted(),
            allowed_cidrs: Vec::new(),
            max_sessions: None,
            created_at: Timestamp::from_millis(0),
            last_used_at: None,
            revoked_at: None,
            expires_at: None,
            rotated_from: None,
            rotated_to: None,
        }
    }

    #[test]
    fn status_follows_revocation_and_grace() {
        let mut c = credential();
        let now = Timestamp::from_millis(1000);
        assert_eq!(c.status(now), CredentialStatus::Active);
        c.expires_at = Some(Timestamp::from_millis(2000));
        assert!(matches!(c.status(now), CredentialStatus::Grace { .. }));
        assert_eq!(
            c.status(Timestamp::from_millis(2000)),
            CredentialStatus::Revoked
        );
        c.expires_at = None;
        c.revoked_at = Some(now);
        assert_eq!(c.status(now), CredentialStatus::Revoked);
    }

    #[test]
    fn source_cidrs_restrict_and_handle_mapped_v4() {
        let mut c = credential();
        assert!(c.allows_source("203.0.113.9".parse().unwrap()));
        c.allowed_cidrs = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(c.allows_source("10.1.2.3".parse().unwrap()));
        assert!(c.allows_source("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.allows_source("11.0.0.1".parse().unwrap()));
        assert!(!c.allows_source("::1".parse().unwrap()));
    }

    #[test]
    fn update_distinguishes_null_from_missing_cap() {
        let missing: CredentialUpdate = serde_json::from_str("{}").unwrap();
        assert_eq!(missing.max_sessions, None);
        assert!(missing.is_empty());
        let null: CredentialUpdate = serde_json::from_str(r#"{"max_sessions":null}"#).unwrap();
        assert_eq!(null.max_sessions, Some(None));
        let set: CredentialUpdate = serde_json::from_str(r#"{"max_sessions":3}"#).unwrap();
        assert_eq!(set.max_sessions, Some(Some(3)));
        assert!(serde_json::from_str::<CredentialUpdate>(r#"{"token":"x"}"#).is_err());
    }

    #[test]
    fn field_limits_are_enforced() {
        assert!(validate_fields(Some(&"x".repeat(256)), None, None, None).is_err());
        assert!(validate_fields(Some("a\nb"), None, None, None).is_err());
        assert!(validate_fields(None, None, None, Some(Some(0))).is_err());
        let mut big = Metadata::new();
        big.insert("k".into(), "v".repeat(5000).into());
        assert!(validate_fields(None, Some(&big), None, None).is_err());
        assert!(validate_fields(Some("cam-42"), None, None, Some(Some(2))).is_ok());
    }
}
