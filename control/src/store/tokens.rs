//! API tokens: random, shown once, stored only as their SHA-256.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{NOW, Store, StoreError, audit};
use crate::config::check_name;
use crate::policy::PolicyChange;

/// Every token starts with this, so that secret scanners recognise leaked ones.
pub const TOKEN_PREFIX: &str = "sipedge_";
/// Random bytes in a token (256 bits).
const TOKEN_RANDOM_BYTES: usize = 32;

/// An API token as listed: its name and when it was created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenInfo {
    /// Name (the audit log's actor).
    pub name: String,
    /// Creation time (UTC).
    pub created: String,
}

/// Lower-case hex SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn new_token() -> Result<String, StoreError> {
    let mut random = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut random)
        .map_err(|e| StoreError::Conflict(format!("no randomness for a token: {e}")))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&random)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The admin token file beside a database: `<db>.token`.
pub fn token_file_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(ToOwned::to_owned).unwrap_or_default();
    name.push(".token");
    db.with_file_name(name)
}

impl Store {
    /// True when at least one API token exists.
    pub fn has_tokens(&self) -> Result<bool, StoreError> {
        Ok(self.conn.query_row("SELECT EXISTS (SELECT 1 FROM api_token)", [], |r| r.get(0))?)
    }

    /// Creates a token named `name`; returns the token (the only time it exists in clear).
    pub fn create_token(&mut self, actor: &str, name: &str) -> Result<String, StoreError> {
        let token = new_token()?;
        self.insert_token(actor, name, &token)?;
        Ok(token)
    }

    fn insert_token(&mut self, actor: &str, name: &str, token: &str) -> Result<(), StoreError> {
        check_name(name).map_err(|why| StoreError::invalid("name", why))?;
        self.write(|tx| {
            let exists =
                tx.query_row("SELECT 1 FROM api_token WHERE name = ?1", [name], |_| Ok(())).optional()?;
            if exists.is_some() {
                return Err(StoreError::Exists { kind: "token", key: name.into() });
            }
            tx.execute(
                &format!("INSERT INTO api_token (name, sha256, created) VALUES (?1, ?2, {NOW})"),
                params![name, hash_token(token)],
            )?;
            audit::<(), _>(
                tx,
                actor,
                "create",
                "token",
                name,
                None,
                Some(&serde_json::json!({ "name": name })),
            )?;
            Ok(((), PolicyChange::None))
        })?;
        Ok(())
    }

    /// The name of the token with this hash, if any.
    pub fn token_name(&self, sha256_hex: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT name FROM api_token WHERE sha256 = ?1")?
            .query_row([sha256_hex], |r| r.get(0))
            .optional()?)
    }

    /// On a store without tokens: creates the `admin` token and writes it to `file` (mode 0600).
    /// Returns the token when it created one.
    pub fn bootstrap_admin_token(&mut self, file: &Path) -> Result<Option<String>, StoreError> {
        if self.has_tokens()? {
            return Ok(None);
        }
        // The file first: if the commit then fails, the next start writes a fresh one; the other
        // order could leave a token nobody knows and no way to get another.
        let token = new_token()?;
        let io = |source| StoreError::TokenFile { path: file.to_path_buf(), source };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(file)
            .map_err(io)?;
        // An older file keeps its mode on open: force 0600.
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        writeln!(f, "{token}").and_then(|()| f.sync_all()).map_err(io)?;
        self.insert_token("sipedge", "admin", &token)?;
        Ok(Some(token))
    }
}

impl Store {
    /// Every token's name and creation time (never the token), by name.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT name, created FROM api_token ORDER BY name")?;
        Ok(stmt
            .query_map([], |r| Ok(TokenInfo { name: r.get(0)?, created: r.get(1)? }))?
            .collect::<Result<_, _>>()?)
    }

    /// Every token as (SHA-256 hex, name).
    pub fn token_hashes(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT sha256, name FROM api_token")?;
        Ok(stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?)
    }
}
