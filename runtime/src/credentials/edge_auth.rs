//! The edge's [`Authenticator`] over the credential store.
//!
//! The edge runs [`Authenticator::authenticate`] on the blocking pool; each call is one or two
//! short SQLite reads plus a `last_used_at` write on a WAL database. Once the session is up,
//! [`Authenticator::open_session`] checks the agent's address against the credential's allowed
//! CIDRs and its session cap, and registers the session in the [`SessionRegistry`] shared with
//! the admin API: the returned lease closes the session when the credential is revoked (or its
//! rotation grace ends) or an operator disconnects it. A refusal at that point closes the session
//! at once with the reason (the edge's hook has no error path after the hello).
//!
//! The principal's name is the id of the **first credential of the rotation lineage**, so an
//! agent that switches from the old token to its rotated replacement is the same endpoint owner
//! to the edge and can take its endpoints over. Bind requests are checked against the ACL of the
//! lineage's newest credential (rotation copies the ACL; later updates go to the newest).
//! Because the principal names the lineage, `authenticate` also records the exact credential
//! in [`Principal::credential`]; `open_session` admits and registers the session under that
//! credential, so revoking an old token closes exactly the sessions that used it.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::acl::EndpointUrl;
use super::audit::{AuditAction, NewAuditRecord};
use super::sessions::{SessionHandle, SessionLimitReached, SessionRegistry};
use super::{
    Actor, Credential, CredentialId, CredentialService, CredentialStatus, CredentialStore,
    StoreError, Timestamp,
};
use crate::auth::{AuthError, Authenticator, Principal, SessionLease};

/// Longest rotation chain followed (a guard against a corrupt, cyclic chain).
const MAX_LINEAGE: usize = 64;

/// Authenticates agents, checks binds and tracks sessions against the credential store.
#[derive(Debug, Clone)]
pub struct StoreAuthenticator {
    store: Arc<dyn CredentialStore>,
    sessions: Option<SessionRegistry>,
}

impl StoreAuthenticator {
    /// An authenticator over `store` that does not track sessions (no source CIDR or session
    /// cap checks, no closing of live sessions).
    pub fn new(store: Arc<dyn CredentialStore>) -> Self {
        Self {
            store,
            sessions: None,
        }
    }

    /// An authenticator that registers every session in `service`'s registry, so revocations
    /// and disconnects through the service (and its admin API) close live sessions, and the
    /// credential's source CIDRs and session cap apply.
    pub fn for_service(service: &CredentialService) -> Self {
        Self {
            store: Arc::clone(service.store()),
            sessions: Some(service.sessions().clone()),
        }
    }

    fn refuse(
        &self,
        credential: Option<&CredentialId>,
        peer: Option<SocketAddr>,
        code: &str,
        detail: &str,
    ) {
        let record = NewAuditRecord::failed(
            &Actor::new("agent", peer.map(|p| p.to_string())),
            AuditAction::SessionRefuse,
            credential.map(ToString::to_string),
            code,
            detail.to_owned(),
        );
        if let Err(error) = self.store.append_audit(&record) {
            tracing::error!(%error, "failed to write audit record");
        }
        tracing::info!(
            code,
            credential = credential.map(CredentialId::as_str),
            "agent refused: {detail}"
        );
    }

    /// Checks the credential an authenticated session of lineage `root` used, and registers
    /// the session; `Err` carries the reason to close the session with.
    fn admit(
        &self,
        root: &CredentialId,
        exact: Option<&CredentialId>,
        peer: SocketAddr,
    ) -> Result<Option<SessionHandle>, String> {
        let Some(sessions) = &self.sessions else {
            return Ok(None);
        };
        let credential = match exact {
            Some(id) => self.store.get(id),
            None => self.lineage_newest(root),
        }
        .map_err(|e| {
            tracing::error!(error = %e, "credential store failed while opening a session");
            "credential store unavailable".to_owned()
        })?;
        if credential.status(Timestamp::now()) == CredentialStatus::Revoked {
            let detail = format!("credential `{}` has been revoked", credential.id);
            self.refuse(Some(&credential.id), Some(peer), "revoked", &detail);
            return Err(detail);
        }
        if !credential.allows_source(peer.ip()) {
            let detail = format!(
                "credential `{}` may not be used from {}",
                credential.id,
                peer.ip()
            );
            self.refuse(
                Some(&credential.id),
                Some(peer),
                "source_not_allowed",
                &detail,
            );
            return Err(detail);
        }
        sessions
            .register(&credential.id, credential.max_sessions, peer, Vec::new())
            .map(Some)
            .map_err(|error| {
                let code = match error {
                    SessionLimitReached::TooMany { .. } => "too_many_sessions",
                    SessionLimitReached::Revoked(_) => "revoked",
                };
                self.refuse(Some(&credential.id), Some(peer), code, &error.to_string());
                error.to_string()
            })
    }

    /// The first credential of `credential`'s rotation lineage.
    fn lineage_root(&self, credential: &Credential) -> Result<CredentialId, StoreError> {
        let mut id = credential.id.clone();
        let mut from = credential.rotated_from.clone();
        for _ in 0..MAX_LINEAGE {
            let Some(previous) = from else { break };
            match self.store.get(&previous) {
                Ok(c) => {
                    from = c.rotated_from;
                    id = c.id;
                }
                Err(StoreError::NotFound(_)) => break,
                Err(error) => return Err(error),
            }
        }
        Ok(id)
    }

    /// The newest credential of the lineage starting at `root`.
    fn lineage_newest(&self, root: &CredentialId) -> Result<Credential, StoreError> {
        let mut credential = self.store.get(root)?;
        for _ in 0..MAX_LINEAGE {
            let Some(next) = credential.rotated_to.clone() else {
                break;
            };
            credential = self.store.get(&next)?;
        }
        Ok(credential)
    }
}

impl Authenticator for StoreAuthenticator {
    fn authenticate(&self, authtoken: &str) -> Result<Principal, AuthError> {
        let now = Timestamp::now();
        let Some(credential) = self.store.find_by_token(authtoken).map_err(store_error)? else {
            self.refuse(None, None, "invalid_token", "authtoken is not valid");
            return Err(AuthError::Unknown);
        };
        if credential.status(now) == CredentialStatus::Revoked {
            let detail = format!("credential `{}` has been revoked", credential.id);
            self.refuse(Some(&credential.id), None, "revoked", &detail);
            return Err(AuthError::Unknown);
        }
        self.store
            .mark_used(&credential.id, now)
            .map_err(store_error)?;
        let root = self.lineage_root(&credential).map_err(store_error)?;
        Ok(Principal {
            name: root.to_string(),
            credential: Some(credential.id.to_string()),
        })
    }

    fn open_session(&self, principal: &Principal, peer: SocketAddr) -> Box<dyn SessionLease> {
        let exact = principal.credential.as_deref().map(CredentialId::parse);
        let admitted = match (CredentialId::parse(&principal.name), exact) {
            (Some(_), Some(None)) | (None, _) => Err("unknown principal".to_owned()),
            (Some(root), exact) => self.admit(&root, exact.flatten().as_ref(), peer),
        };
        Box::new(match admitted {
            Ok(handle) => StoreLease {
                handle,
                refused: None,
            },
            Err(reason) => StoreLease {
                handle: None,
                refused: Some(reason),
            },
        })
    }

    fn authorize_bind(&self, principal: &Principal, url: &str) -> Result<(), AuthError> {
        let forbidden = || AuthError::Forbidden {
            principal: principal.name.clone(),
            url: url.to_owned(),
        };
        let root = CredentialId::parse(&principal.name).ok_or_else(forbidden)?;
        let credential = self
            .lineage_newest(&root)
            .map_err(|e| AuthError::Store(e.to_string()))?;
        let endpoint = match EndpointUrl::parse(url) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                let message = format!(
                    "endpoint `{url}` cannot be checked against this credential's ACL [{}]: {e}",
                    credential.acl.to_strings().join(", ")
                );
                tracing::info!(credential = %credential.id, "bind refused: {message}");
                return Err(AuthError::BindDenied(message));
            }
        };
        // The refusal names the endpoint and the rule set; the agent shows it to its operator.
        credential.acl.allows(&endpoint).map_err(|denied| {
            tracing::info!(credential = %credential.id, "bind refused: {denied}");
            AuthError::BindDenied(denied.to_string())
        })
    }
}

/// A live session's link to the registry.
#[derive(Debug)]
struct StoreLease {
    handle: Option<SessionHandle>,
    /// Set when the session was refused after the hello: it closes at once with this reason.
    refused: Option<String>,
}

impl SessionLease for StoreLease {
    fn endpoints_changed(&self, urls: &[String]) {
        if let Some(handle) = &self.handle {
            handle.set_endpoints(urls);
        }
    }

    fn closed(&self) -> BoxFuture<'_, String> {
        if let Some(reason) = &self.refused {
            return Box::pin(std::future::ready(reason.clone()));
        }
        let Some(handle) = &self.handle else {
            return Box::pin(std::future::pending());
        };
        let mut signal = handle.kill_signal();
        Box::pin(async move {
            // Copy the reason out so no lock guard is held across an await.
            let reason = signal.wait_for(Option::is_some).await.map(|r| *r);
            match reason {
                Ok(Some(reason)) => reason.to_string(),
                // The registry entry outlives the lease, so the channel cannot close first.
                Ok(None) | Err(_) => std::future::pending().await,
            }
        })
    }
}

fn store_error(e: StoreError) -> AuthError {
    tracing::error!(error = %e, "credential store failed during authentication");
    AuthError::Store(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::credentials::{Acl, NewCredential, SqliteStore};

    #[test]
    fn tokens_authenticate_to_the_lineage_root_and_binds_follow_the_acl() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn CredentialStore> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let auth = StoreAuthenticator::new(Arc::clone(&store));
        let actor = Actor::new("test", None);
        let issued = store
            .create(
                NewCredential {
                    acl: Acl::parse(&["bind:*.site.example"]).unwrap(),
                    ..NewCredential::default()
                },
                &actor,
            )
            .unwrap();
        let root = issued.credential.id.to_string();
        let p = auth.authenticate(issued.token.expose()).unwrap();
        assert_eq!(p.name, root);
        assert!(auth.authorize_bind(&p, "https://a.site.example").is_ok());
        match auth.authorize_bind(&p, "https://site.example") {
            // The refusal names the endpoint and the rule set (it reaches the agent).
            Err(AuthError::BindDenied(message)) => {
                assert!(message.contains("`https://site.example`"), "{message}");
                assert!(message.contains("[bind:*.site.example]"), "{message}");
            }
            other => panic!("expected a bind refusal, got {other:?}"),
        }
        assert!(auth.authorize_bind(&p, "tcp://site.example:42000").is_err());

        let rotation = store
            .rotate(&issued.credential.id, Duration::from_secs(60), &actor)
            .unwrap();
        let q = auth.authenticate(rotation.new.token.expose()).unwrap();
        assert_eq!(q.name, root);
        // Binds follow the newest credential's ACL.
        store
            .update(
                &rotation.new.credential.id,
                crate::credentials::CredentialUpdate {
                    acl: Some(Acl::parse(&["bind:only.example"]).unwrap()),
                    ..Default::default()
                },
                &actor,
            )
            .unwrap();
        assert!(auth.authorize_bind(&q, "https://a.site.example").is_err());
        assert!(auth.authorize_bind(&q, "https://only.example").is_ok());

        store.revoke(&issued.credential.id, &actor).unwrap();
        assert_eq!(
            auth.authenticate(issued.token.expose()),
            Err(AuthError::Unknown)
        );
        assert_eq!(auth.authenticate("wkt_garbage"), Err(AuthError::Unknown));
        let refusals = store
            .list_audit(&Default::default())
            .unwrap()
            .into_iter()
            .filter(|r| r.action == "session.refuse")
            .count();
        assert_eq!(refusals, 2);
    }

    #[tokio::test]
    async fn leases_close_on_revocation_and_refuse_outside_the_cidrs() {
        let dir = tempfile::tempdir().unwrap();
        let service = CredentialService::new(Arc::new(SqliteStore::open(dir.path()).unwrap()));
        let auth = StoreAuthenticator::for_service(&service);
        let actor = Actor::new("test", None);
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let issued = service
            .store()
            .create(
                NewCredential {
                    allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
                    ..NewCredential::default()
                },
                &actor,
            )
            .unwrap();
        let principal = auth.authenticate(issued.token.expose()).unwrap();
        let lease = auth.open_session(&principal, peer);
        lease.endpoints_changed(&["https://a.example".to_owned()]);
        let sessions = service.sessions().list();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].credential_id, issued.credential.id);
        assert_eq!(sessions[0].endpoints, ["https://a.example"]);
        service.revoke(&issued.credential.id, &actor).await.unwrap();
        assert_eq!(lease.closed().await, "credential revoked");
        drop(lease);
        assert!(service.sessions().list().is_empty());

        // From outside the allowed networks the lease closes at once, with the reason.
        let other = service
            .store()
            .create(
                NewCredential {
                    allowed_cidrs: vec!["192.0.2.0/24".parse().unwrap()],
                    ..NewCredential::default()
                },
                &actor,
            )
            .unwrap();
        let principal = auth.authenticate(other.token.expose()).unwrap();
        let lease = auth.open_session(&principal, peer);
        assert!(
            lease
                .closed()
                .await
                .contains("may not be used from 127.0.0.1")
        );
        assert!(service.sessions().list().is_empty());
    }
}
