//! Live agent sessions of one edge, with per-session kill signals.
//!
//! The edge registers a session after authenticating it and keeps the returned
//! [`SessionHandle`] for the session's lifetime; dropping the handle unregisters it. Operators
//! list and kill sessions through the registry; a kill sends a [`KillReason`] on the session's
//! `watch` channel, which the session task awaits with [`SessionHandle::killed`].

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::audit::{AuditAction, NewAuditRecord};
use super::token::{is_id_shaped, random_id_body};
use super::{Actor, CredentialId, CredentialStore, Timestamp};

/// A session id: `ss_` followed by 26 base32 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// The prefix of every session id.
    pub const PREFIX: &'static str = "ss_";

    fn generate() -> Self {
        Self(format!("{}{}", Self::PREFIX, random_id_body()))
    }

    /// Parses an id given by a user; `None` unless it has the `ss_` shape.
    pub fn parse(text: &str) -> Option<Self> {
        is_id_shaped(text, Self::PREFIX).then(|| Self(text.to_owned()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a session is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillReason {
    /// Its credential was revoked.
    CredentialRevoked,
    /// Its credential's rotation grace period ended.
    CredentialExpired,
    /// An operator disconnected it.
    Disconnected,
}

impl KillReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::CredentialRevoked => "credential revoked",
            Self::CredentialExpired => "credential rotation grace period ended",
            Self::Disconnected => "disconnected by an operator",
        }
    }
}

impl fmt::Display for KillReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of one live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session id.
    pub id: SessionId,
    /// The credential that authenticated it.
    pub credential_id: CredentialId,
    /// The agent's address.
    pub source: SocketAddr,
    /// When it started.
    pub started_at: Timestamp,
    /// The endpoints it has bound.
    pub endpoints: Vec<String>,
    /// Set once the session has been told to close.
    pub closing: Option<KillReason>,
}

/// Registration refused: the credential already has its maximum number of live sessions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionLimitReached {
    /// The cap is reached.
    #[error("credential `{credential}` already has {max} live session(s), its maximum")]
    TooMany {
        /// The credential.
        credential: CredentialId,
        /// Its cap.
        max: u32,
    },
    /// The credential was revoked while the session was being set up.
    #[error("credential `{0}` was revoked")]
    Revoked(CredentialId),
}

struct Entry {
    info: SessionInfo,
    kill: watch::Sender<Option<KillReason>>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, Entry>,
    /// Credentials revoked while this registry was alive; closes the race between a session
    /// that authenticated just before a revocation and registers just after it.
    /// Each maps to the sessions closed for that revocation, so every caller that revokes
    /// (the admin API, the maintenance pass that reads revocations from the store) reports the
    /// same, complete set whichever of them got there first.
    revoked: HashMap<CredentialId, Vec<SessionId>>,
}

/// The live sessions of one edge. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct SessionRegistry {
    inner: Arc<Mutex<Inner>>,
    audit: Option<Arc<dyn CredentialStore>>,
}

impl fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRegistry")
            .field("sessions", &self.lock().sessions.len())
            .finish_non_exhaustive()
    }
}

impl SessionRegistry {
    /// A registry that does not write audit records.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry that records session start and end in `store`'s audit log.
    pub fn with_audit(store: Arc<dyn CredentialStore>) -> Self {
        Self {
            inner: Arc::default(),
            audit: Some(store),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated (every critical
        // section is a single insert, remove or field write), so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a session of `credential`, refusing it when the credential already has
    /// `max_sessions` open (not closing) sessions or was revoked through this registry.
    pub fn register(
        &self,
        credential: &CredentialId,
        max_sessions: Option<u32>,
        source: SocketAddr,
        endpoints: Vec<String>,
    ) -> Result<SessionHandle, SessionLimitReached> {
        let (kill, kill_rx) = watch::channel(None);
        let info = SessionInfo {
            id: SessionId::generate(),
            credential_id: credential.clone(),
            source,
            started_at: Timestamp::now(),
            endpoints,
            closing: None,
        };
        {
            let mut inner = self.lock();
            if inner.revoked.contains_key(credential) {
                return Err(SessionLimitReached::Revoked(credential.clone()));
            }
            if let Some(max) = max_sessions {
                let open = inner
                    .sessions
                    .values()
                    .filter(|e| &e.info.credential_id == credential && e.info.closing.is_none())
                    .count();
                if open >= usize::try_from(max).unwrap_or(usize::MAX) {
                    return Err(SessionLimitReached::TooMany {
                        credential: credential.clone(),
                        max,
                    });
                }
            }
            inner.sessions.insert(
                info.id.clone(),
                Entry {
                    info: info.clone(),
                    kill,
                },
            );
        }
        tracing::info!(session = %info.id, %credential, %source, "agent session started");
        self.audit(
            NewAuditRecord::ok(
                &Actor::new("agent", Some(source.to_string())),
                AuditAction::SessionStart,
                Some(info.id.to_string()),
            )
            .with_detail(format!("credential `{credential}`")),
        );
        Ok(SessionHandle {
            id: info.id,
            credential: credential.clone(),
            source,
            registry: self.clone(),
            kill: kill_rx,
        })
    }

    /// Every live session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut sessions: Vec<_> = self
            .lock()
            .sessions
            .values()
            .map(|e| e.info.clone())
            .collect();
        sessions.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        sessions
    }

    /// One live session.
    pub fn get(&self, id: &SessionId) -> Option<SessionInfo> {
        self.lock().sessions.get(id).map(|e| e.info.clone())
    }

    /// The number of open (not closing) sessions of `credential`.
    pub fn count_for(&self, credential: &CredentialId) -> usize {
        self.lock()
            .sessions
            .values()
            .filter(|e| &e.info.credential_id == credential && e.info.closing.is_none())
            .count()
    }

    /// Signals one session to close. Returns its snapshot, or `None` if there is no such
    /// session. The signal is sent before this returns.
    pub fn kill(&self, id: &SessionId, reason: KillReason) -> Option<SessionInfo> {
        let mut inner = self.lock();
        let entry = inner.sessions.get_mut(id)?;
        entry.info.closing.get_or_insert(reason);
        entry.kill.send_replace(Some(reason));
        Some(entry.info.clone())
    }

    /// Signals every session of `credential` to close and refuses its future registrations.
    /// Returns every session closed for this revocation, including sessions an earlier call for
    /// the same credential signalled (e.g. the maintenance pass racing the admin API); every
    /// signal has been sent when this returns.
    pub fn kill_credential(&self, credential: &CredentialId, reason: KillReason) -> Vec<SessionId> {
        let mut inner = self.lock();
        let mut killed = Vec::new();
        for entry in inner.sessions.values_mut() {
            if &entry.info.credential_id == credential {
                entry.info.closing.get_or_insert(reason);
                entry.kill.send_replace(Some(reason));
                killed.push(entry.info.id.clone());
            }
        }
        let closed = inner.revoked.entry(credential.clone()).or_default();
        for id in killed {
            if !closed.contains(&id) {
                closed.push(id);
            }
        }
        // Bounded: a session is listed at most once, and only sessions that were registered.
        let mut killed = closed.clone();
        killed.sort();
        drop(inner);
        tracing::info!(%credential, sessions = killed.len(), "closing sessions: {reason}");
        killed
    }

    fn unregister(&self, id: &SessionId) -> Option<SessionInfo> {
        self.lock().sessions.remove(id).map(|e| e.info)
    }

    fn set_endpoints(&self, id: &SessionId, update: impl FnOnce(&mut Vec<String>)) {
        if let Some(entry) = self.lock().sessions.get_mut(id) {
            update(&mut entry.info.endpoints);
        }
    }

    /// Writes an audit record without blocking the caller: on the blocking pool inside a tokio
    /// runtime, inline otherwise.
    fn audit(&self, record: NewAuditRecord) {
        let Some(store) = self.audit.clone() else {
            return;
        };
        let write = move || {
            if let Err(error) = store.append_audit(&record) {
                tracing::error!(%error, action = %record.action, "failed to write audit record");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(write);
            }
            Err(_) => write(),
        }
    }
}

/// Owned by a live session; dropping it unregisters the session (and records its end).
#[derive(Debug)]
pub struct SessionHandle {
    id: SessionId,
    credential: CredentialId,
    source: SocketAddr,
    registry: SessionRegistry,
    kill: watch::Receiver<Option<KillReason>>,
}

impl SessionHandle {
    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The credential that authenticated the session.
    pub fn credential_id(&self) -> &CredentialId {
        &self.credential
    }

    /// Records that the session bound `endpoint`.
    pub fn add_endpoint(&self, endpoint: impl Into<String>) {
        let endpoint = endpoint.into();
        self.registry.set_endpoints(&self.id, |list| {
            if !list.contains(&endpoint) {
                list.push(endpoint);
            }
        });
    }

    /// Replaces the session's endpoint list.
    pub fn set_endpoints(&self, endpoints: &[String]) {
        self.registry
            .set_endpoints(&self.id, |list| *list = endpoints.to_vec());
    }

    /// Records that the session unbound `endpoint`.
    pub fn remove_endpoint(&self, endpoint: &str) {
        self.registry
            .set_endpoints(&self.id, |list| list.retain(|e| e != endpoint));
    }

    /// Why the session was told to close, if it was.
    pub fn kill_reason(&self) -> Option<KillReason> {
        *self.kill.borrow()
    }

    /// A receiver of the kill signal, for other tasks of the session.
    pub fn kill_signal(&self) -> watch::Receiver<Option<KillReason>> {
        self.kill.clone()
    }

    /// Resolves when the session is told to close.
    pub async fn killed(&mut self) -> KillReason {
        // The sender lives in the registry entry, which is removed only when this handle is
        // dropped, so `wait_for` cannot fail while `self` is borrowed.
        match self.kill.wait_for(Option::is_some).await {
            Ok(reason) => reason.unwrap_or(KillReason::Disconnected),
            Err(_) => KillReason::Disconnected,
        }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        let info = self.registry.unregister(&self.id);
        let reason = info
            .and_then(|info| info.closing)
            .map_or_else(|| "closed".to_owned(), |reason| reason.to_string());
        tracing::info!(session = %self.id, credential = %self.credential, "agent session ended: {reason}");
        self.registry.audit(
            NewAuditRecord::ok(
                &Actor::new("agent", Some(self.source.to_string())),
                AuditAction::SessionEnd,
                Some(self.id.to_string()),
            )
            .with_detail(format!("credential `{}`: {reason}", self.credential)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    #[test]
    fn register_list_and_drop() {
        let registry = SessionRegistry::new();
        let cred = CredentialId::generate();
        let handle = registry.register(&cred, None, addr(), vec![]).unwrap();
        handle.add_endpoint("https://a.example");
        handle.add_endpoint("https://a.example");
        let listed = registry.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].endpoints, ["https://a.example"]);
        assert!(SessionId::parse(handle.id().as_str()).is_some());
        drop(handle);
        assert!(registry.list().is_empty());
    }

    #[test]
    fn cap_counts_only_open_sessions() {
        let registry = SessionRegistry::new();
        let cred = CredentialId::generate();
        let first = registry.register(&cred, Some(1), addr(), vec![]).unwrap();
        assert!(matches!(
            registry.register(&cred, Some(1), addr(), vec![]),
            Err(SessionLimitReached::TooMany { max: 1, .. })
        ));
        // Another credential is unaffected.
        let other = CredentialId::generate();
        let _other = registry.register(&other, Some(1), addr(), vec![]).unwrap();
        // A session being killed no longer counts.
        registry.kill(first.id(), KillReason::Disconnected).unwrap();
        let _second = registry.register(&cred, Some(1), addr(), vec![]).unwrap();
    }

    #[tokio::test]
    async fn kill_credential_signals_every_session_and_blocks_new_ones() {
        let registry = SessionRegistry::new();
        let cred = CredentialId::generate();
        let mut a = registry.register(&cred, None, addr(), vec![]).unwrap();
        let mut b = registry.register(&cred, None, addr(), vec![]).unwrap();
        let other = registry
            .register(&CredentialId::generate(), None, addr(), vec![])
            .unwrap();
        let killed = registry.kill_credential(&cred, KillReason::CredentialRevoked);
        assert_eq!(killed.len(), 2);
        assert_eq!(a.killed().await, KillReason::CredentialRevoked);
        assert_eq!(b.killed().await, KillReason::CredentialRevoked);
        assert_eq!(other.kill_reason(), None);
        assert!(matches!(
            registry.register(&cred, None, addr(), vec![]),
            Err(SessionLimitReached::Revoked(_))
        ));
    }

    #[test]
    fn kill_unknown_session_is_none() {
        let registry = SessionRegistry::new();
        let id = SessionId::generate();
        assert!(registry.kill(&id, KillReason::Disconnected).is_none());
    }
}
