//! The edge's [`Authenticator`] over the credential store.
//!
//! The edge calls the trait synchronously from its handshake and bind paths; each call here is
//! one or two short SQLite reads (plus a `last_used_at` write on success) on a WAL database.
//!
//! The principal's name is the id of the **first credential of the rotation lineage**, so an
//! agent that switches from the old token to its rotated replacement is the same endpoint owner
//! to the edge and can take its endpoints over. Bind requests are checked against the ACL of the
//! lineage's newest credential (rotation copies the ACL; later updates go to the newest).

use std::sync::Arc;

use super::acl::EndpointUrl;
use super::audit::{AuditAction, NewAuditRecord};
use super::{
    Actor, Credential, CredentialId, CredentialStatus, CredentialStore, StoreError, Timestamp,
};
use crate::auth::{AuthError, Authenticator, Principal};

/// Longest rotation chain followed (a guard against a corrupt, cyclic chain).
const MAX_LINEAGE: usize = 64;

/// Authenticates agents and checks binds against the credential store.
#[derive(Debug, Clone)]
pub struct StoreAuthenticator {
    store: Arc<dyn CredentialStore>,
}

impl StoreAuthenticator {
    /// An authenticator over `store`.
    pub fn new(store: Arc<dyn CredentialStore>) -> Self {
        Self { store }
    }

    fn refuse(&self, credential: Option<&CredentialId>, code: &str, detail: &str) {
        let record = NewAuditRecord::failed(
            &Actor::new("agent", None),
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
        let store_error = |e: StoreError| {
            tracing::error!(error = %e, "credential store failed during authentication");
            AuthError::Store(e.to_string())
        };
        let Some(credential) = self.store.find_by_token(authtoken).map_err(store_error)? else {
            self.refuse(None, "invalid_token", "authtoken is not valid");
            return Err(AuthError::Unknown);
        };
        if credential.status(now) == CredentialStatus::Revoked {
            let detail = format!("credential `{}` has been revoked", credential.id);
            self.refuse(Some(&credential.id), "revoked", &detail);
            return Err(AuthError::Unknown);
        }
        self.store
            .mark_used(&credential.id, now)
            .map_err(store_error)?;
        let root = self.lineage_root(&credential).map_err(store_error)?;
        Ok(Principal {
            name: root.to_string(),
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
        let endpoint = EndpointUrl::parse(url).map_err(|e| {
            tracing::info!(credential = %credential.id, "bind refused: {e}");
            forbidden()
        })?;
        credential.acl.allows(&endpoint).map_err(|denied| {
            // The edge's error type has no room for the rule set; the log line carries it.
            tracing::info!(credential = %credential.id, "bind refused: {denied}");
            forbidden()
        })
    }
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
        assert!(matches!(
            auth.authorize_bind(&p, "https://site.example"),
            Err(AuthError::Forbidden { .. })
        ));
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
}
