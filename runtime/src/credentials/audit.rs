//! Audit records: one per mutating admin action and per session start, end, kill or refusal.
//!
//! Records hold ids, names, addresses and error codes only. No code path puts a token (or its
//! hash) into a record: credential ids identify credentials everywhere.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Actor, Timestamp};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditAction {
    /// A credential was created.
    CredentialCreate,
    /// A credential's fields were changed.
    CredentialUpdate,
    /// A credential was rotated.
    CredentialRotate,
    /// A credential was revoked.
    CredentialRevoke,
    /// A rotated credential's grace period ended.
    CredentialExpire,
    /// An agent session started.
    SessionStart,
    /// An agent session ended.
    SessionEnd,
    /// An agent session was refused.
    SessionRefuse,
    /// An operator disconnected a session.
    SessionKill,
}

impl AuditAction {
    /// The stable dotted name stored in the database (`credential.create`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CredentialCreate => "credential.create",
            Self::CredentialUpdate => "credential.update",
            Self::CredentialRotate => "credential.rotate",
            Self::CredentialRevoke => "credential.revoke",
            Self::CredentialExpire => "credential.expire",
            Self::SessionStart => "session.start",
            Self::SessionEnd => "session.end",
            Self::SessionRefuse => "session.refuse",
            Self::SessionKill => "session.kill",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditRecord {
    /// When it happened.
    pub at: Timestamp,
    /// Who did it (`admin-api`, `cli`, `system`, or `agent` for session events).
    pub actor: String,
    /// What was done.
    pub action: AuditAction,
    /// The credential or session id acted on.
    pub target: Option<String>,
    /// `ok`, or the error code of the failure.
    pub result: String,
    /// The network address of the actor.
    pub source: Option<String>,
    /// A human-readable detail (never a secret).
    pub detail: Option<String>,
}

impl NewAuditRecord {
    /// A successful action by `actor` now.
    pub fn ok(actor: &Actor, action: AuditAction, target: Option<String>) -> Self {
        Self {
            at: Timestamp::now(),
            actor: actor.name.clone(),
            action,
            target,
            result: "ok".to_owned(),
            source: actor.source.clone(),
            detail: None,
        }
    }

    /// A failed action by `actor` now, with the error code and message.
    pub fn failed(
        actor: &Actor,
        action: AuditAction,
        target: Option<String>,
        code: &str,
        detail: String,
    ) -> Self {
        Self {
            result: code.to_owned(),
            detail: Some(detail),
            ..Self::ok(actor, action, target)
        }
    }

    /// The same record with a detail message.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number (increasing).
    pub id: i64,
    /// When it happened.
    pub at: Timestamp,
    /// Who did it.
    pub actor: String,
    /// What was done (`credential.create`, `session.refuse` …).
    pub action: String,
    /// The credential or session id acted on.
    pub target: Option<String>,
    /// `ok`, or the error code of the failure.
    pub result: String,
    /// The network address of the actor.
    pub source: Option<String>,
    /// A human-readable detail.
    pub detail: Option<String>,
}

/// Which records to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// At most this many (the most recent ones); the store caps it at [`AuditFilter::MAX_LIMIT`].
    pub limit: Option<usize>,
}

impl AuditFilter {
    /// The largest number of records one listing returns.
    pub const MAX_LIMIT: usize = 10_000;

    /// The effective limit.
    pub fn effective_limit(&self) -> usize {
        self.limit.unwrap_or(Self::MAX_LIMIT).min(Self::MAX_LIMIT)
    }
}
