//! The async face of the credential store for the edge and the admin API.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::acl::{Acl, AclDenied, EndpointUrl};
use super::audit::{AuditAction, NewAuditRecord};
use super::sessions::{
    KillReason, SessionHandle, SessionId, SessionInfo, SessionLimitReached, SessionRegistry,
};
use super::{
    Actor, Credential, CredentialId, CredentialStatus, CredentialStore, Rotation, StoreError,
    Timestamp,
};

/// Why an agent session was refused. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is not one this edge issued (or is malformed).
    #[error("authtoken is not valid")]
    InvalidToken,
    /// The token's credential was revoked (or its rotation grace ended).
    #[error("credential `{0}` has been revoked")]
    Revoked(CredentialId),
    /// The agent's address is outside the credential's allowed CIDRs.
    #[error("credential `{credential}` may not be used from {source_ip}")]
    SourceNotAllowed {
        /// The credential.
        credential: CredentialId,
        /// The agent's address.
        source_ip: IpAddr,
    },
    /// The credential already has its maximum number of live sessions.
    #[error("credential `{credential}` already has {max} live session(s), its maximum")]
    TooManySessions {
        /// The credential.
        credential: CredentialId,
        /// Its cap.
        max: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// A short stable code for the audit log and the wire protocol.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidToken => "invalid_token",
            Self::Revoked(_) => "revoked",
            Self::SourceNotAllowed { .. } => "source_not_allowed",
            Self::TooManySessions { .. } => "too_many_sessions",
            Self::Store(_) => "internal",
        }
    }

    fn credential(&self) -> Option<&CredentialId> {
        match self {
            Self::Revoked(id)
            | Self::SourceNotAllowed { credential: id, .. }
            | Self::TooManySessions { credential: id, .. } => Some(id),
            Self::InvalidToken | Self::Store(_) => None,
        }
    }
}

/// A credential that passed authentication.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticatedCredential {
    credential: Credential,
}

impl AuthenticatedCredential {
    /// The credential id.
    pub fn id(&self) -> &CredentialId {
        &self.credential.id
    }

    /// The ACL to check bind requests against.
    pub fn acl(&self) -> &Acl {
        &self.credential.acl
    }

    /// Checks a bind request against the credential's ACL.
    pub fn check_bind(&self, endpoint: &EndpointUrl) -> Result<(), AclDenied> {
        self.credential.acl.allows(endpoint)
    }

    /// The full credential as it was at authentication time.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }
}

/// Store plus live sessions: what the edge and the admin API work with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CredentialService {
    store: Arc<dyn CredentialStore>,
    sessions: SessionRegistry,
}

impl CredentialService {
    /// A service over `store`, with a fresh session registry that audits into the same store.
    pub fn new(store: Arc<dyn CredentialStore>) -> Self {
        let sessions = SessionRegistry::with_audit(Arc::clone(&store));
        Self { store, sessions }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn CredentialStore> {
        &self.store
    }

    /// The live sessions.
    pub fn sessions(&self) -> &SessionRegistry {
        &self.sessions
    }

    /// Runs a store call on the blocking pool.
    pub async fn blocking<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn CredentialStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Checks an agent's token and source address, and that the credential has room for one
    /// more session. Refusals are written to the audit log. The cap is checked again,
    /// atomically, by [`CredentialService::start_session`].
    pub async fn authenticate(
        &self,
        token: &str,
        source: SocketAddr,
    ) -> Result<AuthenticatedCredential, AuthError> {
        let result = self.authenticate_inner(token.to_owned(), source).await;
        if let Err(error) = &result {
            self.record_refusal(error, source).await;
        }
        result
    }

    async fn authenticate_inner(
        &self,
        token: String,
        source: SocketAddr,
    ) -> Result<AuthenticatedCredential, AuthError> {
        let now = Timestamp::now();
        let found = self
            .blocking(move |store| {
                let found = store.find_by_token(&token)?;
                if let Some(credential) = &found
                    && credential.status(now) != CredentialStatus::Revoked
                {
                    store.mark_used(&credential.id, now)?;
                }
                Ok(found)
            })
            .await?;
        let credential = found.ok_or(AuthError::InvalidToken)?;
        if credential.status(now) == CredentialStatus::Revoked {
            return Err(AuthError::Revoked(credential.id));
        }
        if !credential.allows_source(source.ip()) {
            return Err(AuthError::SourceNotAllowed {
                credential: credential.id,
                source_ip: source.ip(),
            });
        }
        if let Some(max) = credential.max_sessions
            && self.sessions.count_for(&credential.id) >= usize::try_from(max).unwrap_or(usize::MAX)
        {
            return Err(AuthError::TooManySessions {
                credential: credential.id,
                max,
            });
        }
        Ok(AuthenticatedCredential { credential })
    }

    /// Registers a live session for an authenticated credential (enforcing the session cap
    /// atomically) and records its start.
    pub async fn start_session(
        &self,
        auth: &AuthenticatedCredential,
        source: SocketAddr,
    ) -> Result<SessionHandle, AuthError> {
        let result = self
            .sessions
            .register(auth.id(), auth.credential.max_sessions, source, Vec::new())
            .map_err(|error| match error {
                SessionLimitReached::TooMany { credential, max } => {
                    AuthError::TooManySessions { credential, max }
                }
                SessionLimitReached::Revoked(credential) => AuthError::Revoked(credential),
            });
        if let Err(error) = &result {
            self.record_refusal(error, source).await;
        }
        result
    }

    /// [`CredentialService::authenticate`] then [`CredentialService::start_session`].
    pub async fn connect(
        &self,
        token: &str,
        source: SocketAddr,
    ) -> Result<(AuthenticatedCredential, SessionHandle), AuthError> {
        let auth = self.authenticate(token, source).await?;
        let session = self.start_session(&auth, source).await?;
        Ok((auth, session))
    }

    async fn record_refusal(&self, error: &AuthError, source: SocketAddr) {
        tracing::info!(
            code = error.code(),
            credential = error.credential().map(CredentialId::as_str),
            %source,
            "agent session refused: {error}"
        );
        let actor = Actor::new("agent", Some(source.to_string()));
        let record = NewAuditRecord::failed(
            &actor,
            AuditAction::SessionRefuse,
            error.credential().map(ToString::to_string),
            error.code(),
            error.to_string(),
        );
        if let Err(audit_error) = self
            .blocking(move |store| store.append_audit(&record))
            .await
        {
            tracing::error!(%audit_error, "failed to write audit record");
        }
    }

    /// Revokes a credential in the store, then signals each of its live sessions to close.
    /// Returns once every session has been signalled.
    pub async fn revoke(
        &self,
        id: &CredentialId,
        actor: &Actor,
    ) -> Result<(Credential, Vec<SessionId>), StoreError> {
        let (id, actor) = (id.clone(), actor.clone());
        let credential = {
            let id = id.clone();
            self.blocking(move |store| store.revoke(&id, &actor))
                .await?
        };
        let killed = self
            .sessions
            .kill_credential(&id, KillReason::CredentialRevoked);
        Ok((credential, killed))
    }

    /// Rotates a credential; with a zero grace the old credential's sessions are closed at once.
    pub async fn rotate(
        &self,
        id: &CredentialId,
        grace: Duration,
        actor: &Actor,
    ) -> Result<Rotation, StoreError> {
        let (id, actor) = (id.clone(), actor.clone());
        let rotation = {
            let id = id.clone();
            self.blocking(move |store| store.rotate(&id, grace, &actor))
                .await?
        };
        if rotation.old.revoked_at.is_some() {
            self.sessions
                .kill_credential(&id, KillReason::CredentialRevoked);
        }
        Ok(rotation)
    }

    /// Disconnects one session and records it.
    pub async fn kill_session(&self, id: &SessionId, actor: &Actor) -> Option<SessionInfo> {
        let killed = self.sessions.kill(id, KillReason::Disconnected);
        let record = match &killed {
            Some(info) => NewAuditRecord::ok(actor, AuditAction::SessionKill, Some(id.to_string()))
                .with_detail(format!("credential `{}`", info.credential_id)),
            None => NewAuditRecord::failed(
                actor,
                AuditAction::SessionKill,
                Some(id.to_string()),
                "not_found",
                format!("no live session with id `{id}`"),
            ),
        };
        if let Err(audit_error) = self
            .blocking(move |store| store.append_audit(&record))
            .await
        {
            tracing::error!(%audit_error, "failed to write audit record");
        }
        killed
    }

    /// Revokes credentials whose rotation grace has ended and closes their sessions.
    pub async fn expire_graces(&self) -> Result<Vec<CredentialId>, StoreError> {
        let now = Timestamp::now();
        let expired = self.blocking(move |store| store.expire_graces(now)).await?;
        for id in &expired {
            self.sessions
                .kill_credential(id, KillReason::CredentialExpired);
        }
        Ok(expired)
    }

    /// Closes live sessions whose credential the store reports revoked (or past its grace)
    /// although this edge did not revoke it, e.g. `wicket tokens revoke --data-dir` run
    /// directly against the database, or another edge sharing it. Returns the credentials
    /// whose sessions were closed.
    pub async fn enforce_revocations(&self) -> Result<Vec<CredentialId>, StoreError> {
        let mut live: Vec<CredentialId> = self
            .sessions
            .list()
            .into_iter()
            .filter(|s| s.closing.is_none())
            .map(|s| s.credential_id)
            .collect();
        live.sort();
        live.dedup();
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let now = Timestamp::now();
        let revoked = self
            .blocking(move |store| {
                let mut revoked = Vec::new();
                for id in live {
                    match store.get(&id) {
                        Ok(c) if c.status(now) != CredentialStatus::Revoked => {}
                        Ok(_) | Err(StoreError::NotFound(_)) => revoked.push(id),
                        Err(error) => return Err(error),
                    }
                }
                Ok(revoked)
            })
            .await?;
        for id in &revoked {
            self.sessions
                .kill_credential(id, KillReason::CredentialRevoked);
        }
        Ok(revoked)
    }

    /// Every `period` until the task is aborted: runs [`CredentialService::expire_graces`] and
    /// [`CredentialService::enforce_revocations`]. One second keeps revocations made outside
    /// this edge's admin API within about a second.
    pub fn spawn_maintenance(&self, period: Duration) -> JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(error) = service.expire_graces().await {
                    tracing::error!(%error, "failed to expire rotated credentials");
                }
                if let Err(error) = service.enforce_revocations().await {
                    tracing::error!(%error, "failed to check live sessions for revocations");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{NewCredential, SqliteStore};

    fn service(dir: &std::path::Path) -> CredentialService {
        CredentialService::new(Arc::new(SqliteStore::open(dir).unwrap()))
    }

    fn admin() -> Actor {
        Actor::new("test", None)
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn authenticate_checks_token_source_and_cap() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let issued = svc
            .store()
            .create(
                NewCredential {
                    allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
                    max_sessions: Some(1),
                    ..NewCredential::default()
                },
                &admin(),
            )
            .unwrap();
        let token = issued.token.expose();
        let (auth, session) = svc.connect(token, addr("127.0.0.1:5000")).await.unwrap();
        assert_eq!(auth.id(), &issued.credential.id);
        assert!(svc.store().get(auth.id()).unwrap().last_used_at.is_some());
        assert!(matches!(
            svc.connect(token, addr("127.0.0.1:5001")).await,
            Err(AuthError::TooManySessions { max: 1, .. })
        ));
        drop(session);
        assert!(matches!(
            svc.authenticate(token, addr("192.0.2.1:5000")).await,
            Err(AuthError::SourceNotAllowed { .. })
        ));
        assert!(matches!(
            svc.authenticate("wkt_nope", addr("127.0.0.1:1")).await,
            Err(AuthError::InvalidToken)
        ));
        let refusals = svc
            .store()
            .list_audit(&Default::default())
            .unwrap()
            .into_iter()
            .filter(|r| r.action == "session.refuse")
            .map(|r| r.result)
            .collect::<Vec<_>>();
        assert_eq!(
            refusals,
            ["too_many_sessions", "source_not_allowed", "invalid_token"]
        );
    }

    #[tokio::test]
    async fn revoke_kills_sessions_and_refuses_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let issued = svc
            .store()
            .create(NewCredential::default(), &admin())
            .unwrap();
        let token = issued.token.expose().to_owned();
        let (_, mut session) = svc.connect(&token, addr("127.0.0.1:1")).await.unwrap();
        let (_, killed) = svc.revoke(&issued.credential.id, &admin()).await.unwrap();
        assert_eq!(killed, [session.id().clone()]);
        assert_eq!(session.killed().await, KillReason::CredentialRevoked);
        assert!(matches!(
            svc.authenticate(&token, addr("127.0.0.1:1")).await,
            Err(AuthError::Revoked(_))
        ));
    }

    #[tokio::test]
    async fn revocation_outside_the_service_is_enforced_on_live_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let issued = svc
            .store()
            .create(NewCredential::default(), &admin())
            .unwrap();
        let other = svc
            .store()
            .create(NewCredential::default(), &admin())
            .unwrap();
        let (_, mut session) = svc
            .connect(issued.token.expose(), addr("127.0.0.1:1"))
            .await
            .unwrap();
        let (_, other_session) = svc
            .connect(other.token.expose(), addr("127.0.0.1:1"))
            .await
            .unwrap();
        assert!(svc.enforce_revocations().await.unwrap().is_empty());
        // Another connection to the same database (the CLI with `--data-dir`) revokes.
        let cli = SqliteStore::open(dir.path()).unwrap();
        cli.revoke(&issued.credential.id, &admin()).unwrap();
        assert_eq!(
            svc.enforce_revocations().await.unwrap(),
            std::slice::from_ref(&issued.credential.id)
        );
        assert_eq!(session.killed().await, KillReason::CredentialRevoked);
        assert_eq!(other_session.kill_reason(), None);
    }

    #[tokio::test]
    async fn rotation_grace_keeps_both_tokens_until_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let issued = svc
            .store()
            .create(NewCredential::default(), &admin())
            .unwrap();
        let old_token = issued.token.expose().to_owned();
        let rotation = svc
            .rotate(&issued.credential.id, Duration::from_secs(3600), &admin())
            .await
            .unwrap();
        let new_token = rotation.new.token.expose().to_owned();
        let (_, old_session) = svc.connect(&old_token, addr("127.0.0.1:1")).await.unwrap();
        svc.authenticate(&new_token, addr("127.0.0.1:1"))
            .await
            .unwrap();
        assert!(svc.expire_graces().await.unwrap().is_empty());
        // Zero grace on the new credential: it is revoked at once, its sessions are closed.
        let (_, mut new_session) = svc.connect(&new_token, addr("127.0.0.1:1")).await.unwrap();
        svc.rotate(&rotation.new.credential.id, Duration::ZERO, &admin())
            .await
            .unwrap();
        assert_eq!(new_session.killed().await, KillReason::CredentialRevoked);
        assert_eq!(old_session.kill_reason(), None);
    }
}
