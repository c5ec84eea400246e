//! Schema migrations, versioned in code: migration `i` (0-based) moves the database from
//! `PRAGMA user_version = i` to `i + 1`. Append new migrations; never edit a released one.

use rusqlite::Connection;

use super::StoreError;

/// The migrations, in order.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('policy_version', 0);

    CREATE TABLE target (
        name TEXT PRIMARY KEY,
        uris TEXT NOT NULL               -- JSON array of sip: URIs, in order
    );

    CREATE TABLE trunk (
        name                 TEXT PRIMARY KEY,
        cps                  INTEGER NOT NULL,
        max_calls            INTEGER NOT NULL,
        country_code         TEXT NOT NULL,
        national_prefix      TEXT NOT NULL,
        international_prefix TEXT NOT NULL,
        emergency_target     TEXT REFERENCES target (name),
        over_capacity_code   INTEGER NOT NULL
    );

    -- The allow-list: each source network identifies one trunk.
    CREATE TABLE trunk_source (
        cidr        TEXT PRIMARY KEY,
        trunk       TEXT NOT NULL REFERENCES trunk (name) ON DELETE CASCADE,
        description TEXT
    );
    CREATE INDEX trunk_source_trunk ON trunk_source (trunk);

    CREATE TABLE did (
        number      TEXT PRIMARY KEY,
        target      TEXT NOT NULL REFERENCES target (name),
        customer    TEXT,
        grp         TEXT,
        tag         TEXT,
        status      TEXT NOT NULL DEFAULT 'in-use' CHECK (status IN ('in-use', 'free')),
        free_since  TEXT,
        description TEXT
    ) WITHOUT ROWID;
    CREATE INDEX did_target ON did (target);
    CREATE INDEX did_customer ON did (customer);
    CREATE INDEX did_grp ON did (grp);

    -- Number blocks: a prefix, or an inclusive range first..last.
    CREATE TABLE did_block (
        id     INTEGER PRIMARY KEY,
        prefix TEXT,
        first  TEXT,
        last   TEXT,
        target TEXT NOT NULL REFERENCES target (name),
        CHECK ((prefix IS NOT NULL AND first IS NULL AND last IS NULL)
            OR (prefix IS NULL AND first IS NOT NULL AND last IS NOT NULL))
    );
    CREATE UNIQUE INDEX did_block_key ON did_block (coalesce(prefix, first || '-' || last));

    CREATE TABLE blocklist (
        cidr    TEXT PRIMARY KEY,
        reason  TEXT NOT NULL,
        created TEXT NOT NULL,
        expires TEXT                     -- UTC YYYY-MM-DDTHH:MM:SSZ; NULL: never
    );

    CREATE TABLE api_token (
        name    TEXT PRIMARY KEY,
        sha256  TEXT NOT NULL UNIQUE,    -- hex SHA-256 of the token; the token is never stored
        created TEXT NOT NULL
    );

    CREATE TABLE audit (
        id     INTEGER PRIMARY KEY,
        at     TEXT NOT NULL,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        object TEXT NOT NULL,
        key    TEXT NOT NULL,
        before TEXT,                     -- JSON, NULL when created
        after  TEXT                      -- JSON, NULL when deleted
    );
    "#,
    // 2: routing keys: emergency numbers and short-number floor per trunk, weights and
    // overflow per target, a concurrent-call limit per DID.
    r#"
    ALTER TABLE trunk ADD COLUMN emergency_numbers TEXT;          -- JSON array, NULL: by country
    ALTER TABLE trunk ADD COLUMN min_national_digits INTEGER NOT NULL DEFAULT 7;
    ALTER TABLE target ADD COLUMN weights TEXT;                   -- JSON array, NULL: serial
    ALTER TABLE target ADD COLUMN overflow TEXT;
    ALTER TABLE did ADD COLUMN max_calls INTEGER;
    "#,
    // 3: number blocks carry a DID's metadata and a call limit for the whole block.
    r#"
    ALTER TABLE did_block ADD COLUMN max_calls INTEGER;
    ALTER TABLE did_block ADD COLUMN customer TEXT;
    ALTER TABLE did_block ADD COLUMN grp TEXT;
    ALTER TABLE did_block ADD COLUMN tag TEXT;
    ALTER TABLE did_block ADD COLUMN description TEXT;
    "#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Applies the missing migrations, each in its own transaction with its version bump.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}
