//! The SQLite store: the source of truth once seeded from the configuration file.
//!
//! One [`Store`] is one connection (SQLite in WAL mode, foreign keys on, `synchronous = FULL` so
//! that a commit is on disk when it returns). Every change runs in one `IMMEDIATE` transaction that
//! validates, applies, appends to the audit log and bumps the policy version: a change is all
//! there or not at all, even under `kill -9`. A `Store` is blocking; async code calls it from
//! `spawn_blocking` (see `crate::plane`).

mod dids;
mod objects;
mod schema;
mod tokens;
mod transfer;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::config::{Config, FieldError};
use crate::policy::{Blocked, Policy, PolicyChange, RoutedDid};

pub use dids::{CsvImport, DidQuery, MAX_IMPORT_ERRORS, MAX_IMPORT_ROWS, vanity_to_digits};
pub use objects::{
    AclEntry, BlockRequest, Blocked as BlockedRow, Limits, MAX_BLOCK_TTL_SECS, NumberBlock, WriteMode,
};
pub use tokens::{TOKEN_PREFIX, TokenInfo, hash_token, token_file_for};
pub use transfer::{Diff, DiffEntry, DiffOp, MAX_DIFF_ENTRIES};

/// How long a connection waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default page size of list queries.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Largest page size of list queries.
pub const MAX_PAGE_LIMIT: usize = 10_000;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed (I/O, corruption, lock timeout).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The input was refused; nothing was applied.
    #[error("invalid input: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The object does not exist.
    #[error("{kind} {key:?} not found")]
    NotFound {
        /// Object kind (`did`, `trunk`, …).
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// The object exists already (create only).
    #[error("{kind} {key:?} already exists")]
    Exists {
        /// Object kind.
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// The change would leave a dangling reference or an invalid object.
    #[error("{0}")]
    Conflict(String),
    /// The database was written by a newer sipedge.
    #[error("database schema version {found} is newer than this build's {supported}")]
    SchemaTooNew {
        /// Version in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// Reading an import source failed.
    #[error("reading the import: {0}")]
    Read(String),
    /// A token file could not be written.
    #[error("token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl StoreError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, reason)])
    }
}

/// A page request: at most `limit` items whose key sorts after `after`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Items per page (default [`DEFAULT_PAGE_LIMIT`], at most [`MAX_PAGE_LIMIT`]).
    pub limit: Option<usize>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
}

impl Page {
    /// The effective limit, or a field error.
    pub fn limit(&self) -> Result<usize, StoreError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE_LIMIT),
            Some(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(StoreError::invalid("limit", format!("{n} is outside 1..={MAX_PAGE_LIMIT}"))),
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing<T> {
    /// The items, in key order.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> Listing<T> {
    /// Builds a page from up to `limit + 1` rows (the extra row says there is a next page).
    fn from_rows(mut rows: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Self {
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Self { items: rows, next }
    }
}

/// A committed change: the policy version it produced and what the data plane must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Policy version after the commit.
    pub version: u64,
    /// What changed.
    pub change: PolicyChange,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number (the pagination key).
    pub id: i64,
    /// UTC time of the commit.
    pub at: String,
    /// Who: the API token's name, or `config-file` for seeding.
    pub actor: String,
    /// `create`, `update`, `delete`, `import`, …
    pub action: String,
    /// Object kind: `trunk`, `target`, `did`, `block`, `acl`, `limits`, `blocklist`, `token`, `config`.
    pub object: String,
    /// The object's key.
    pub key: String,
    /// The object before (absent when created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The object after (absent when deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// Counts of the stored objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Trunks.
    pub trunks: u64,
    /// Targets.
    pub targets: u64,
    /// All DIDs.
    pub dids: u64,
    /// DIDs with status `free`.
    pub dids_free: u64,
    /// Number blocks.
    pub blocks: u64,
    /// Allow-list entries (trunk sources).
    pub acl: u64,
    /// Blocklist entries in force.
    pub blocklist: u64,
    /// Audit log entries.
    pub audit: u64,
}

/// The UTC time now, as the store writes it.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

/// One connection to the store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if absent) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        Ok(Self { conn })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// True when the store holds no trunk, target or DID (a fresh database).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT (SELECT count(*) FROM trunk) + (SELECT count(*) FROM target) + (SELECT count(*) FROM did)",
            [],
            |r| r.get(0),
        )?;
        Ok(n == 0)
    }

    /// Seeds an empty store from the configuration file; does nothing when the store has content.
    /// Returns whether it seeded.
    pub fn seed_if_empty(&mut self, config: &Config) -> Result<bool, StoreError> {
        if !self.is_empty()? {
            return Ok(false);
        }
        self.import_config("config-file", config)?;
        Ok(true)
    }

    /// The current policy version.
    pub fn policy_version(&self) -> Result<u64, StoreError> {
        version(&self.conn)
    }

    /// Counts of the stored objects.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        Ok(self.conn.query_row(
            &format!(
                "SELECT (SELECT count(*) FROM trunk), (SELECT count(*) FROM target),
                        (SELECT count(*) FROM did), (SELECT count(*) FROM did WHERE status = 'free'),
                        (SELECT count(*) FROM did_block), (SELECT count(*) FROM trunk_source),
                        (SELECT count(*) FROM blocklist WHERE expires IS NULL OR expires > {NOW}),
                        (SELECT count(*) FROM audit)"
            ),
            [],
            |r| {
                Ok(Counts {
                    trunks: r.get(0)?,
                    targets: r.get(1)?,
                    dids: r.get(2)?,
                    dids_free: r.get(3)?,
                    blocks: r.get(4)?,
                    acl: r.get(5)?,
                    blocklist: r.get(6)?,
                    audit: r.get(7)?,
                })
            },
        )?)
    }

    /// The audit log, oldest first, filtered by object kind and key when given.
    pub fn audit(
        &self,
        object: Option<&str>,
        key: Option<&str>,
        page: &Page,
    ) -> Result<Listing<AuditEntry>, StoreError> {
        let limit = page.limit()?;
        let after: i64 = match &page.after {
            None => 0,
            Some(a) => {
                a.parse().map_err(|_| StoreError::invalid("after", format!("{a:?} is not an audit id")))?
            }
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at, actor, action, object, key, before, after FROM audit
             WHERE id > ?1 AND (?2 IS NULL OR object = ?2) AND (?3 IS NULL OR key = ?3)
             ORDER BY id LIMIT ?4",
        )?;
        let rows = stmt
            .query_map(params![after, object, key, limit + 1], |r| {
                let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    object: r.get(4)?,
                    key: r.get(5)?,
                    before: json(r.get(6)?),
                    after: json(r.get(7)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing::from_rows(rows, limit, |e| e.id.to_string()))
    }

    /// The routing and admission snapshot at the current version. `base` supplies the
    /// file-only sections (`edge`, `control`, `xdp`).
    pub fn load_policy(&self, base: &Config) -> Result<Policy, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let version = version(&tx)?;
        let config = Config {
            edge: base.edge.clone(),
            control: base.control.clone(),
            xdp: base.xdp.clone(),
            health: base.health.clone(),
            trunks: objects::all_trunks(&tx)?,
            targets: objects::all_targets(&tx)?,
            dids: Vec::new(),
            did_ranges: objects::all_blocks(&tx)?.into_iter().map(NumberBlock::into_range).collect(),
            blocklist: Vec::new(),
        };
        let blocklist = objects::blocklist_in_force(&tx)?
            .into_iter()
            .map(|(cidr, expires_unix)| Blocked { cidr, expires_unix })
            .collect();
        tx.finish()?;
        Ok(Policy { version, config, blocklist })
    }

    /// Streams the routed (in-use) DIDs to `f` in number order, in one read transaction;
    /// returns the policy version they belong to. The first error `f` returns stops the read.
    pub fn each_routed_did<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(RoutedDid<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let tx = self.conn.unchecked_transaction().map_err(StoreError::from)?;
        let version = version(&tx)?;
        let mut stmt = tx
            .prepare(
                "SELECT number, target, max_calls, customer, grp, tag, description FROM did \
                 WHERE status = 'in-use' ORDER BY number",
            )
            .map_err(StoreError::from)?;
        let mut rows = stmt.query([]).map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            let text = |i: usize| -> Result<Option<&str>, StoreError> {
                Ok(row.get_ref(i)?.as_str_or_null().map_err(rusqlite::Error::from)?)
            };
            let did = RoutedDid {
                number: text(0)?.unwrap_or_default(),
                target: text(1)?.unwrap_or_default(),
                max_calls: row.get(2).map_err(StoreError::from)?,
                customer: text(3)?,
                group: text(4)?,
                tag: text(5)?,
                description: text(6)?,
            };
            f(did)?;
        }
        drop(rows);
        drop(stmt);
        tx.finish().map_err(StoreError::from)?;
        Ok(version)
    }

    /// The routed set as `(number, target)` pairs, and its version.
    #[cfg(test)]
    pub(crate) fn routed_pairs(&self) -> (u64, Vec<(String, String)>) {
        let mut pairs = Vec::new();
        let version = self
            .each_routed_did(|d| {
                pairs.push((d.number.to_owned(), d.target.to_owned()));
                Ok::<_, StoreError>(())
            })
            .expect("routed DIDs");
        (version, pairs)
    }

    /// Runs `f` in one IMMEDIATE transaction, then bumps the policy version and commits.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<(T, PolicyChange), StoreError>,
    ) -> Result<(T, Committed), StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (value, change) = f(&tx)?;
        let version: u64 = tx.query_row(
            "UPDATE meta SET value = value + 1 WHERE key = 'policy_version' RETURNING value",
            [],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok((value, Committed { version, change }))
    }
}

fn version(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = 'policy_version'", [], |r| r.get(0))?)
}

/// Appends one audit entry inside the caller's transaction.
fn audit<B: Serialize, A: Serialize>(
    tx: &Transaction<'_>,
    actor: &str,
    action: &str,
    object: &str,
    key: &str,
    before: Option<&B>,
    after: Option<&A>,
) -> Result<(), StoreError> {
    // Serializing our own plain-data types cannot fail; a failure would only lose the detail.
    let before = before.and_then(|b| serde_json::to_string(b).ok());
    let after = after.and_then(|a| serde_json::to_string(a).ok());
    tx.prepare_cached(&format!(
        "INSERT INTO audit (at, actor, action, object, key, before, after) VALUES ({NOW}, ?1, ?2, ?3, ?4, ?5, ?6)"
    ))?
    .execute(params![actor, action, object, key, before, after])?;
    Ok(())
}

/// True when a target of that name exists.
fn target_exists(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM target WHERE name = ?1")?
        .query_row([name], |_| Ok(()))
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests;
