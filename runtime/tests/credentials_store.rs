//! The SQLite store on disk: persistence across reopen, two connections in WAL mode, and no
//! token in the database files or the logs.

#![allow(
    clippy::unwrap_used,
    reason = "test support code outside #[test] functions"
)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wicket_runtime::credentials::{
    Acl, Actor, AuditFilter, AuthError, CredentialService, CredentialStore, DB_FILE_NAME,
    NewCredential, SqliteStore,
};

fn actor() -> Actor {
    Actor::new("cli", None)
}

fn agent() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

#[tokio::test]
async fn credentials_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, revoked, rotated_old, rotated_new) = {
        let store = SqliteStore::open(dir.path()).unwrap();
        let new = || NewCredential {
            description: "site".into(),
            acl: Acl::parse(&["bind:*.site.example"]).unwrap(),
            ..NewCredential::default()
        };
        let kept = store.create(new(), &actor()).unwrap();
        let revoked = store.create(new(), &actor()).unwrap();
        store.revoke(&revoked.credential.id, &actor()).unwrap();
        let rotated = store.create(new(), &actor()).unwrap();
        let rotation = store
            .rotate(&rotated.credential.id, Duration::from_secs(600), &actor())
            .unwrap();
        (kept, revoked, rotated, rotation.new)
    };
    // A new process: reopen and check every state survived.
    let service = CredentialService::new(Arc::new(SqliteStore::open(dir.path()).unwrap()));
    let list = service.store().list().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(
        service.store().get(&kept.credential.id).unwrap().acl,
        kept.credential.acl
    );
    service
        .authenticate(kept.token.expose(), agent())
        .await
        .unwrap();
    assert!(matches!(
        service.authenticate(revoked.token.expose(), agent()).await,
        Err(AuthError::Revoked(_))
    ));
    // Both sides of a rotation in grace still work after the restart.
    service
        .authenticate(rotated_old.token.expose(), agent())
        .await
        .unwrap();
    service
        .authenticate(rotated_new.token.expose(), agent())
        .await
        .unwrap();
    let audit = service.store().list_audit(&AuditFilter::default()).unwrap();
    assert!(audit.iter().any(|r| r.action == "credential.rotate"));
}

#[test]
fn credentials_two_connections_share_the_database_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let cli = Arc::new(SqliteStore::open(dir.path()).unwrap());
    assert!(dir.path().join(format!("{DB_FILE_NAME}-wal")).exists());
    const PER_WRITER: usize = 25;
    let writers: Vec<_> = [Arc::clone(&edge), Arc::clone(&cli)]
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                let mut tokens = Vec::new();
                for _ in 0..PER_WRITER {
                    let issued = store.create(NewCredential::default(), &actor()).unwrap();
                    // Interleave reads with the other connection's writes.
                    assert!(!store.list().unwrap().is_empty());
                    tokens.push(issued.token.expose().to_owned());
                }
                tokens
            })
        })
        .collect();
    let tokens: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(edge.list().unwrap().len(), 2 * PER_WRITER);
    assert_eq!(cli.list().unwrap().len(), 2 * PER_WRITER);
    // A credential created through one connection is visible through the other.
    for token in &tokens {
        assert!(edge.find_by_token(token).unwrap().is_some());
    }
    let revoked = cli.list().unwrap()[0].id.clone();
    cli.revoke(&revoked, &actor()).unwrap();
    assert!(edge.get(&revoked).unwrap().revoked_at.is_some());
}

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_token_never_reaches_database_files_or_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Global, so that log lines from the blocking pool's threads are captured too. No other
    // test in this binary installs a subscriber.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let service = CredentialService::new(Arc::new(SqliteStore::open(dir.path()).unwrap()));
    let store = service.store();
    let issued = store
        .create(
            NewCredential {
                description: "cam-42".into(),
                acl: Acl::parse(&["bind:cam-42.fleet.example.test"]).unwrap(),
                max_sessions: Some(1),
                allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
                ..NewCredential::default()
            },
            &actor(),
        )
        .unwrap();
    let token = issued.token.expose().to_owned();
    let id = issued.credential.id.clone();
    // Use it: a session, a refused second session, a refused source, then rotation and revoke.
    let (_, session) = service.connect(&token, agent()).await.unwrap();
    assert!(service.connect(&token, agent()).await.is_err());
    assert!(
        service
            .authenticate(&token, "192.0.2.1:1".parse().unwrap())
            .await
            .is_err()
    );
    drop(session);
    let rotation = service
        .rotate(&id, Duration::from_secs(60), &actor())
        .await
        .unwrap();
    let new_token = rotation.new.token.expose().to_owned();
    let (_, new_session) = service.connect(&new_token, agent()).await.unwrap();
    drop(new_session);
    service.revoke(&id, &actor()).await.unwrap();
    assert!(service.authenticate(&token, agent()).await.is_err());
    // Session start and end records are written off the session's task: wait for them.
    let mut waited = 0;
    loop {
        let records = store.list_audit(&AuditFilter::default()).unwrap();
        let count = |action: &str| records.iter().filter(|r| r.action == action).count();
        if count("session.end") >= 2 && count("session.refuse") >= 3 {
            break;
        }
        waited += 1;
        assert!(waited < 500, "audit records did not appear: {records:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(rotation);
    drop(service);

    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    assert!(files.iter().any(|(name, _)| name.ends_with(DB_FILE_NAME)));
    let log_text = logs.0.lock().unwrap().clone();
    files.push(("captured logs".to_owned(), log_text));
    for secret in [&token, &new_token] {
        // The full token and its random part alone.
        let body = secret.strip_prefix("wkt_").unwrap();
        for (name, bytes) in &files {
            for needle in [secret.as_bytes(), body.as_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "a token appears in {name}"
                );
            }
        }
    }
}
