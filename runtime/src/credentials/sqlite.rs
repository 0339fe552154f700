//! The embedded SQLite credential store.
//!
//! `<data_dir>/wicket.db` holds credentials and the audit log; `<data_dir>/wicket.key` holds the
//! 256-bit token hashing key (mode 0600, hex). The database runs in WAL mode with a busy timeout,
//! so the CLI can operate on it (`--data-dir`) while an edge has it open. The schema is created
//! and migrated on open: `schema_version` holds the number of applied entries of [`MIGRATIONS`],
//! applied in order inside one `BEGIN IMMEDIATE` transaction.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, Row, Transaction, TransactionBehavior, params};

use super::audit::{AuditAction, AuditFilter, AuditRecord, NewAuditRecord};
use super::token::{HASH_KEY_LEN, Token, TokenHash, TokenHasher};
use super::{
    Actor, Credential, CredentialId, CredentialStore, CredentialUpdate, IssuedCredential, Metadata,
    NewCredential, Rotation, StoreError, Timestamp, format_duration, validate_fields,
};
use crate::credentials::acl::Acl;

/// The database file name inside the data directory.
pub const DB_FILE_NAME: &str = "wicket.db";

/// The hashing key file name inside the data directory.
pub const KEY_FILE_NAME: &str = "wicket.key";

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations, applied in order; entry `i` moves the schema from version `i` to `i + 1`.
/// Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: credentials, audit log, settings.
    "CREATE TABLE credentials (
        id            TEXT PRIMARY KEY NOT NULL,
        token_hash    BLOB NOT NULL UNIQUE,
        description   TEXT NOT NULL,
        metadata      TEXT NOT NULL,
        acl           TEXT NOT NULL,
        allowed_cidrs TEXT NOT NULL,
        max_sessions  INTEGER,
        created_at    INTEGER NOT NULL,
        last_used_at  INTEGER,
        revoked_at    INTEGER,
        expires_at    INTEGER,
        rotated_from  TEXT REFERENCES credentials(id),
        rotated_to    TEXT REFERENCES credentials(id)
    ) STRICT;
    CREATE TABLE audit_log (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT,
        result  TEXT NOT NULL,
        source  TEXT,
        detail  TEXT
    ) STRICT;
    CREATE INDEX audit_log_at ON audit_log(at);
    CREATE TABLE settings (
        name  TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;",
];

/// What a successful change adds to its audit record.
#[derive(Debug, Default)]
struct Note {
    /// The target, when it is only known after the change (the id of a created credential).
    target: Option<String>,
    /// A detail message.
    detail: Option<String>,
}

impl Note {
    fn detail(detail: String) -> Self {
        Self {
            target: None,
            detail: Some(detail),
        }
    }
}

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Columns of `credentials` in the order [`row_to_credential`] reads them.
const CREDENTIAL_COLUMNS: &str = "id, description, metadata, acl, allowed_cidrs, max_sessions, \
     created_at, last_used_at, revoked_at, expires_at, rotated_from, rotated_to";

/// A [`CredentialStore`] over one SQLite connection (serialised by a mutex).
pub struct SqliteStore {
    conn: Mutex<Connection>,
    hasher: TokenHasher,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(data_dir)?;
        let key = load_or_create_key(&data_dir.join(KEY_FILE_NAME))?;
        let path = data_dir.join(DB_FILE_NAME);
        let mut conn = Connection::open(&path)?;
        restrict_permissions(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // `journal_mode` returns a row, so it is read rather than executed.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "could not enable WAL mode (got `{mode}`)"
            )));
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        migrate(&mut conn)?;
        let hasher = TokenHasher::new(key);
        check_key(&mut conn, &hasher, &data_dir.join(KEY_FILE_NAME))?;
        Ok(Self {
            conn: Mutex::new(conn),
            hasher,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.lock()?;
        Ok(conn.query_row("SELECT version FROM schema_version", [], |row| row.get(0))?)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Task("credential store mutex poisoned".to_owned()))
    }

    /// Runs `change` in an immediate transaction; writes the success record it returns in the
    /// same transaction, or a failure record (outside it) when `change` fails.
    fn audited<T>(
        &self,
        actor: &Actor,
        action: AuditAction,
        target: Option<&CredentialId>,
        change: impl FnOnce(&Transaction<'_>) -> Result<(T, Note), StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock()?;
        let target_text = target.map(ToString::to_string);
        let outcome: Result<T, StoreError> = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (value, note) = change(&tx)?;
            let target = note.target.or_else(|| target_text.clone());
            let mut record = NewAuditRecord::ok(actor, action, target);
            record.detail = note.detail;
            insert_audit(&tx, &record)?;
            tx.commit()?;
            Ok(value)
        })();
        if let Err(error) = &outcome {
            let record =
                NewAuditRecord::failed(actor, action, target_text, error.code(), error.to_string());
            if let Err(audit_error) = insert_audit(&conn, &record) {
                tracing::error!(%audit_error, action = %action, "failed to write audit record");
            }
        }
        outcome
    }
}

impl CredentialStore for SqliteStore {
    fn create(&self, new: NewCredential, actor: &Actor) -> Result<IssuedCredential, StoreError> {
        self.audited(actor, AuditAction::CredentialCreate, None, |tx| {
            validate_fields(
                Some(&new.description),
                Some(&new.metadata),
                Some(&new.allowed_cidrs),
                Some(new.max_sessions),
            )?;
            let token = Token::generate();
            let credential = Credential {
                id: CredentialId::generate(),
                description: new.description,
                metadata: new.metadata,
                acl: new.acl,
                allowed_cidrs: new.allowed_cidrs,
                max_sessions: new.max_sessions,
                created_at: Timestamp::now(),
                last_used_at: None,
                revoked_at: None,
                expires_at: None,
                rotated_from: None,
                rotated_to: None,
            };
            insert_credential(tx, &credential, &self.hasher.hash(token.expose()))?;
            let note = Note {
                target: Some(credential.id.to_string()),
                detail: None,
            };
            Ok((IssuedCredential { credential, token }, note))
        })
    }

    fn get(&self, id: &CredentialId) -> Result<Credential, StoreError> {
        let conn = self.lock()?;
        select_credential(&conn, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    fn list(&self) -> Result<Vec<Credential>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([], row_to_raw)?;
        rows.map(|raw| {
            raw.map_err(StoreError::from)
                .and_then(RawCredential::decode)
        })
        .collect()
    }

    fn update(
        &self,
        id: &CredentialId,
        update: CredentialUpdate,
        actor: &Actor,
    ) -> Result<Credential, StoreError> {
        self.audited(actor, AuditAction::CredentialUpdate, Some(id), |tx| {
            validate_fields(
                update.description.as_deref(),
                update.metadata.as_ref(),
                update.allowed_cidrs.as_deref(),
                update.max_sessions,
            )?;
            let mut credential =
                select_credential(tx, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let mut changed = Vec::new();
            if let Some(description) = update.description {
                credential.description = description;
                changed.push("description");
            }
            if let Some(metadata) = update.metadata {
                credential.metadata = metadata;
                changed.push("metadata");
            }
            if let Some(acl) = update.acl {
                credential.acl = acl;
                changed.push("acl");
            }
            if let Some(cidrs) = update.allowed_cidrs {
                credential.allowed_cidrs = cidrs;
                changed.push("allowed_cidrs");
            }
            if let Some(max) = update.max_sessions {
                credential.max_sessions = max;
                changed.push("max_sessions");
            }
            tx.execute(
                "UPDATE credentials SET description = ?2, metadata = ?3, acl = ?4, \
                 allowed_cidrs = ?5, max_sessions = ?6 WHERE id = ?1",
                params![
                    credential.id.as_str(),
                    credential.description,
                    json(&credential.metadata)?,
                    json(&credential.acl)?,
                    cidrs_json(&credential.allowed_cidrs)?,
                    credential.max_sessions,
                ],
            )?;
            let detail = if changed.is_empty() {
                "no fields changed".to_owned()
            } else {
                format!("changed {}", changed.join(", "))
            };
            Ok((credential, Note::detail(detail)))
        })
    }

    fn rotate(
        &self,
        id: &CredentialId,
        grace: Duration,
        actor: &Actor,
    ) -> Result<Rotation, StoreError> {
        self.audited(actor, AuditAction::CredentialRotate, Some(id), |tx| {
            let now = Timestamp::now();
            let mut old =
                select_credential(tx, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
            if let Some(next) = &old.rotated_to {
                return Err(StoreError::Conflict(format!(
                    "credential `{id}` was already rotated to `{next}`"
                )));
            }
            if old.status(now) == super::CredentialStatus::Revoked {
                return Err(StoreError::Conflict(format!(
                    "credential `{id}` is revoked and cannot be rotated"
                )));
            }
            let token = Token::generate();
            let new = Credential {
                id: CredentialId::generate(),
                created_at: now,
                last_used_at: None,
                revoked_at: None,
                expires_at: None,
                rotated_from: Some(old.id.clone()),
                rotated_to: None,
                ..old.clone()
            };
            insert_credential(tx, &new, &self.hasher.hash(token.expose()))?;
            old.rotated_to = Some(new.id.clone());
            if grace.is_zero() {
                old.revoked_at = Some(now);
            } else {
                old.expires_at = Some(now.saturating_add(grace));
            }
            tx.execute(
                "UPDATE credentials SET rotated_to = ?2, revoked_at = ?3, expires_at = ?4 \
                 WHERE id = ?1",
                params![
                    old.id.as_str(),
                    new.id.as_str(),
                    old.revoked_at.map(Timestamp::as_millis),
                    old.expires_at.map(Timestamp::as_millis),
                ],
            )?;
            let detail = format!("replaced by `{}`, grace {}", new.id, format_duration(grace));
            Ok((
                Rotation {
                    old,
                    new: IssuedCredential {
                        credential: new,
                        token,
                    },
                },
                Note::detail(detail),
            ))
        })
    }

    fn revoke(&self, id: &CredentialId, actor: &Actor) -> Result<Credential, StoreError> {
        self.audited(actor, AuditAction::CredentialRevoke, Some(id), |tx| {
            let mut credential =
                select_credential(tx, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
            if let Some(at) = credential.revoked_at {
                return Err(StoreError::Conflict(format!(
                    "credential `{id}` was already revoked at {at}"
                )));
            }
            let now = Timestamp::now();
            credential.revoked_at = Some(now);
            tx.execute(
                "UPDATE credentials SET revoked_at = ?2 WHERE id = ?1",
                params![id.as_str(), now.as_millis()],
            )?;
            Ok((credential, Note::default()))
        })
    }

    fn expire_graces(&self, now: Timestamp) -> Result<Vec<CredentialId>, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids = {
            let mut stmt = tx.prepare(
                "SELECT id FROM credentials WHERE revoked_at IS NULL AND expires_at IS NOT NULL \
                 AND expires_at <= ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([now.as_millis()], |row| row.get::<_, String>(0))?;
            rows.map(|id| {
                let id = id?;
                CredentialId::parse(&id)
                    .ok_or_else(|| StoreError::Corrupt(format!("bad credential id `{id}`")))
            })
            .collect::<Result<Vec<_>, _>>()?
        };
        for id in &ids {
            tx.execute(
                "UPDATE credentials SET revoked_at = expires_at WHERE id = ?1",
                [id.as_str()],
            )?;
            let record = NewAuditRecord::ok(
                &Actor::system(),
                AuditAction::CredentialExpire,
                Some(id.to_string()),
            )
            .with_detail("rotation grace period ended");
            insert_audit(&tx, &record)?;
        }
        tx.commit()?;
        Ok(ids)
    }

    fn find_by_token(&self, token: &str) -> Result<Option<Credential>, StoreError> {
        if !Token::is_well_formed(token) {
            return Ok(None);
        }
        let presented = self.hasher.hash(token);
        let conn = self.lock()?;
        let found = conn
            .query_row(
                &format!(
                    "SELECT token_hash, {CREDENTIAL_COLUMNS} FROM credentials \
                     WHERE token_hash = ?1"
                ),
                [presented.as_bytes().as_slice()],
                |row| {
                    let hash: Vec<u8> = row.get(0)?;
                    Ok((hash, raw_from_row(row, 1)?))
                },
            )
            .optional()?;
        let Some((stored, raw)) = found else {
            return Ok(None);
        };
        // The index lookup found the row; the constant-time comparison is the check we rely on.
        let stored = TokenHash::from_slice(&stored)
            .ok_or_else(|| StoreError::Corrupt("token hash has the wrong length".to_owned()))?;
        if !stored.ct_eq(&presented) {
            return Ok(None);
        }
        raw.decode().map(Some)
    }

    fn mark_used(&self, id: &CredentialId, at: Timestamp) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE credentials SET last_used_at = ?2 WHERE id = ?1",
            params![id.as_str(), at.as_millis()],
        )?;
        Ok(())
    }

    fn append_audit(&self, record: &NewAuditRecord) -> Result<(), StoreError> {
        let conn = self.lock()?;
        insert_audit(&conn, record)
    }

    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.lock()?;
        let limit = i64::try_from(filter.effective_limit()).unwrap_or(i64::MAX);
        let since = filter.since.map_or(i64::MIN, Timestamp::as_millis);
        // The most recent `limit` records, returned oldest first.
        let mut stmt = conn.prepare(
            "SELECT id, at, actor, action, target, result, source, detail FROM ( \
               SELECT * FROM audit_log WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2 \
             ) ORDER BY at, id",
        )?;
        let rows = stmt.query_map(params![since, limit], |row| {
            Ok(AuditRecord {
                id: row.get(0)?,
                at: Timestamp::from_millis(row.get(1)?),
                actor: row.get(2)?,
                action: row.get(3)?,
                target: row.get(4)?,
                result: row.get(5)?,
                source: row.get(6)?,
                detail: row.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Applies pending migrations.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: Option<i64> = tx
        .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
        .optional()?;
    let current = match current {
        Some(version) => version,
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", [])?;
            0
        }
    };
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    let pending = MIGRATIONS
        .iter()
        .skip(usize::try_from(current).unwrap_or(usize::MAX));
    for migration in pending {
        tx.execute_batch(migration)?;
    }
    tx.execute("UPDATE schema_version SET version = ?1", [SCHEMA_VERSION])?;
    tx.commit()?;
    Ok(())
}

/// Stores a fingerprint of the hashing key on first use and checks it afterwards, so a replaced
/// key file is reported instead of silently refusing every token.
fn check_key(
    conn: &mut Connection,
    hasher: &TokenHasher,
    key_path: &Path,
) -> Result<(), StoreError> {
    let fingerprint = hex::encode(hasher.hash("wicket key fingerprint").as_bytes());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stored: Option<String> = tx
        .query_row(
            "SELECT value FROM settings WHERE name = 'key_fingerprint'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    match stored {
        Some(stored) if stored == fingerprint => {}
        Some(_) => return Err(StoreError::KeyMismatch(key_path.display().to_string())),
        None => {
            tx.execute(
                "INSERT INTO settings (name, value) VALUES ('key_fingerprint', ?1)",
                [fingerprint],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn insert_credential(
    conn: &Connection,
    credential: &Credential,
    hash: &TokenHash,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO credentials (id, token_hash, description, metadata, acl, allowed_cidrs, \
         max_sessions, created_at, last_used_at, revoked_at, expires_at, rotated_from, rotated_to) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            credential.id.as_str(),
            hash.as_bytes().as_slice(),
            credential.description,
            json(&credential.metadata)?,
            json(&credential.acl)?,
            cidrs_json(&credential.allowed_cidrs)?,
            credential.max_sessions,
            credential.created_at.as_millis(),
            credential.last_used_at.map(Timestamp::as_millis),
            credential.revoked_at.map(Timestamp::as_millis),
            credential.expires_at.map(Timestamp::as_millis),
            credential.rotated_from.as_ref().map(CredentialId::as_str),
            credential.rotated_to.as_ref().map(CredentialId::as_str),
        ],
    )?;
    Ok(())
}

fn insert_audit(conn: &Connection, record: &NewAuditRecord) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, result, source, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            record.at.as_millis(),
            record.actor,
            record.action.as_str(),
            record.target,
            record.result,
            record.source,
            record.detail,
        ],
    )?;
    Ok(())
}

fn select_credential(
    conn: &Connection,
    id: &CredentialId,
) -> Result<Option<Credential>, StoreError> {
    conn.query_row(
        &format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE id = ?1"),
        [id.as_str()],
        row_to_raw,
    )
    .optional()?
    .map(RawCredential::decode)
    .transpose()
}

/// A credential row before its JSON columns are decoded.
struct RawCredential {
    id: String,
    description: String,
    metadata: String,
    acl: String,
    allowed_cidrs: String,
    max_sessions: Option<u32>,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
    rotated_from: Option<String>,
    rotated_to: Option<String>,
}

fn row_to_raw(row: &Row<'_>) -> rusqlite::Result<RawCredential> {
    raw_from_row(row, 0)
}

fn raw_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<RawCredential> {
    Ok(RawCredential {
        id: row.get(first)?,
        description: row.get(first + 1)?,
        metadata: row.get(first + 2)?,
        acl: row.get(first + 3)?,
        allowed_cidrs: row.get(first + 4)?,
        max_sessions: row.get(first + 5)?,
        created_at: row.get(first + 6)?,
        last_used_at: row.get(first + 7)?,
        revoked_at: row.get(first + 8)?,
        expires_at: row.get(first + 9)?,
        rotated_from: row.get(first + 10)?,
        rotated_to: row.get(first + 11)?,
    })
}

impl RawCredential {
    fn decode(self) -> Result<Credential, StoreError> {
        let id = parse_id(&self.id)?;
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("credential `{}`: {what}: {e}", self.id))
        };
        let metadata: Metadata =
            serde_json::from_str(&self.metadata).map_err(|e| corrupt("metadata", e))?;
        let acl: Acl = serde_json::from_str(&self.acl).map_err(|e| corrupt("acl", e))?;
        let cidr_texts: Vec<String> =
            serde_json::from_str(&self.allowed_cidrs).map_err(|e| corrupt("allowed_cidrs", e))?;
        let allowed_cidrs = cidr_texts
            .iter()
            .map(|text| super::parse_cidr(text))
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::Corrupt(format!("credential `{}`: {e}", self.id)))?;
        Ok(Credential {
            id,
            description: self.description,
            metadata,
            acl,
            allowed_cidrs,
            max_sessions: self.max_sessions,
            created_at: Timestamp::from_millis(self.created_at),
            last_used_at: self.last_used_at.map(Timestamp::from_millis),
            revoked_at: self.revoked_at.map(Timestamp::from_millis),
            expires_at: self.expires_at.map(Timestamp::from_millis),
            rotated_from: self.rotated_from.as_deref().map(parse_id).transpose()?,
            rotated_to: self.rotated_to.as_deref().map(parse_id).transpose()?,
        })
    }
}

fn parse_id(text: &str) -> Result<CredentialId, StoreError> {
    CredentialId::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("bad credential id `{text}`")))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn cidrs_json(cidrs: &[ipnet::IpNet]) -> Result<String, StoreError> {
    json(&cidrs.iter().map(ToString::to_string).collect::<Vec<_>>())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates the data directory (mode 0700 on Unix) if it does not exist.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_error(dir))
}

/// Makes a file readable and writable by its owner only (Unix).
fn restrict_permissions(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path)
            .map_err(io_error(path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_error(path))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Reads the hashing key, creating it atomically (write a private temporary file, then
/// hard-link it into place, which fails if another process won the race) when missing.
fn load_or_create_key(path: &Path) -> Result<[u8; HASH_KEY_LEN], StoreError> {
    if !path.exists() {
        let key = TokenHasher::generate_key();
        let tmp = path.with_extension(format!("tmp-{}", super::token::random_id_body()));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(hex::encode(key).as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| fs::hard_link(&tmp, path));
        let _ = fs::remove_file(&tmp);
        match written {
            Ok(()) => return Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(path)(e)),
        }
    }
    restrict_permissions(path)?;
    let text = fs::read_to_string(path).map_err(io_error(path))?;
    let bytes = hex::decode(text.trim())
        .ok()
        .filter(|bytes| bytes.len() == HASH_KEY_LEN)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "`{}` does not hold a {HASH_KEY_LEN}-byte hex key",
                path.display()
            ))
        })?;
    let mut key = [0u8; HASH_KEY_LEN];
    key.copy_from_slice(&bytes);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor() -> Actor {
        Actor::new("test", Some("127.0.0.1:1".to_owned()))
    }

    #[test]
    fn open_creates_private_files_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = SqliteStore::open(&data).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&data.join(KEY_FILE_NAME)), 0o600);
            assert_eq!(mode(&data.join(DB_FILE_NAME)), 0o600);
            assert_eq!(mode(&data), 0o700);
        }
        drop(store);
        // Reopening migrates nothing and keeps the key.
        let again = SqliteStore::open(&data).unwrap();
        assert_eq!(again.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(conn);
        let err = SqliteStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn replaced_key_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        fs::write(dir.path().join(KEY_FILE_NAME), hex::encode([7u8; 32])).unwrap();
        let err = SqliteStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::KeyMismatch(_)), "{err}");
    }

    #[test]
    fn create_find_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let issued = store
            .create(
                NewCredential {
                    description: "cam-42".into(),
                    acl: Acl::parse(&["bind:cam-42.fleet.example.test"]).unwrap(),
                    ..NewCredential::default()
                },
                &actor(),
            )
            .unwrap();
        let found = store.find_by_token(issued.token.expose()).unwrap().unwrap();
        assert_eq!(found, issued.credential);
        assert!(
            store
                .find_by_token(Token::generate().expose())
                .unwrap()
                .is_none()
        );
        assert!(store.find_by_token("garbage").unwrap().is_none());
        let revoked = store.revoke(&issued.credential.id, &actor()).unwrap();
        assert!(revoked.revoked_at.is_some());
        assert!(matches!(
            store.revoke(&issued.credential.id, &actor()),
            Err(StoreError::Conflict(_))
        ));
        let audit = store.list_audit(&AuditFilter::default()).unwrap();
        let actions: Vec<_> = audit
            .iter()
            .map(|r| (r.action.as_str(), r.result.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("credential.create", "ok"),
                ("credential.revoke", "ok"),
                ("credential.revoke", "conflict")
            ]
        );
    }

    #[test]
    fn rotation_links_rows_and_schedules_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let issued = store
            .create(
                NewCredential {
                    description: "site-1".into(),
                    acl: Acl::parse(&["bind:*.site1.example"]).unwrap(),
                    max_sessions: Some(2),
                    ..NewCredential::default()
                },
                &actor(),
            )
            .unwrap();
        let old_id = issued.credential.id.clone();
        let rotation = store
            .rotate(&old_id, Duration::from_secs(3600), &actor())
            .unwrap();
        let new = &rotation.new.credential;
        assert_eq!(new.acl, issued.credential.acl);
        assert_eq!(new.description, "site-1");
        assert_eq!(new.max_sessions, Some(2));
        assert_eq!(new.rotated_from.as_ref(), Some(&old_id));
        assert_eq!(rotation.old.rotated_to.as_ref(), Some(&new.id));
        assert!(rotation.old.revoked_at.is_none());
        let until = rotation.old.expires_at.unwrap();
        assert!(matches!(
            store.rotate(&old_id, Duration::ZERO, &actor()),
            Err(StoreError::Conflict(_))
        ));
        // Nothing expires before the grace ends; everything due expires after.
        assert!(store.expire_graces(Timestamp::now()).unwrap().is_empty());
        assert_eq!(store.expire_graces(until).unwrap(), vec![old_id.clone()]);
        assert_eq!(store.get(&old_id).unwrap().revoked_at, Some(until));
        assert!(store.expire_graces(until).unwrap().is_empty());
        // Zero grace revokes at once.
        let next = store.rotate(&new.id, Duration::ZERO, &actor()).unwrap();
        assert!(next.old.revoked_at.is_some());
    }

    #[test]
    fn update_changes_only_given_fields() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let issued = store.create(NewCredential::default(), &actor()).unwrap();
        let id = issued.credential.id;
        let updated = store
            .update(
                &id,
                CredentialUpdate {
                    acl: Some(Acl::parse(&["bind:a.example"]).unwrap()),
                    max_sessions: Some(Some(1)),
                    ..CredentialUpdate::default()
                },
                &actor(),
            )
            .unwrap();
        assert_eq!(updated.acl.to_strings(), ["bind:a.example"]);
        assert_eq!(updated.max_sessions, Some(1));
        assert_eq!(store.get(&id).unwrap(), updated);
        let missing = CredentialId::generate();
        assert!(matches!(
            store.update(&missing, CredentialUpdate::default(), &actor()),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn audit_listing_filters_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        for at in [1000, 2000, 3000] {
            let mut record = NewAuditRecord::ok(&actor(), AuditAction::SessionStart, None);
            record.at = Timestamp::from_millis(at);
            store.append_audit(&record).unwrap();
        }
        let since = AuditFilter {
            since: Some(Timestamp::from_millis(2000)),
            limit: None,
        };
        let ats: Vec<_> = store
            .list_audit(&since)
            .unwrap()
            .iter()
            .map(|r| r.at.as_millis())
            .collect();
        assert_eq!(ats, [2000, 3000]);
        let last = AuditFilter {
            since: None,
            limit: Some(1),
        };
        assert_eq!(store.list_audit(&last).unwrap()[0].at.as_millis(), 3000);
    }
}
