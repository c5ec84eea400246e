//! The whole state as a configuration: export (for version control), import with a diff (dry run
//! or applied in one transaction), and seeding an empty store from the configuration file.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::dids::{all_dids, write_did};
use super::objects::{
    all_blocked, all_blocks, all_targets, all_trunks, insert_block, range_key, write_blocked, write_target,
    write_trunk,
};
use super::{Committed, Store, StoreError, audit};
use crate::config::{BlockEntry, Config, Did, DidStatus};
use crate::policy::PolicyChange;

/// Most diff entries an import reports in detail (the counts are always complete).
pub const MAX_DIFF_ENTRIES: usize = 1_000;

/// What a diff entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffOp {
    /// In the import, not in the store.
    Add,
    /// In both, different.
    Change,
    /// In the store, not in the import.
    Remove,
}

/// One object that an import adds, changes or removes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffEntry {
    /// What happens.
    pub op: DiffOp,
    /// Object kind: `trunk`, `target`, `did`, `did_range`, `blocklist`.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// Before (absent when added).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// After (absent when removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// The difference between the store and an imported configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    /// Objects added.
    pub added: u64,
    /// Objects changed.
    pub changed: u64,
    /// Objects removed.
    pub removed: u64,
    /// The first [`MAX_DIFF_ENTRIES`] entries.
    pub entries: Vec<DiffEntry>,
    /// True when `entries` is cut short.
    pub truncated: bool,
}

impl Diff {
    /// True when the import changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added + self.changed + self.removed == 0
    }

    fn push<T: Serialize>(
        &mut self,
        op: DiffOp,
        kind: &str,
        key: &str,
        before: Option<&T>,
        after: Option<&T>,
    ) {
        match op {
            DiffOp::Add => self.added += 1,
            DiffOp::Change => self.changed += 1,
            DiffOp::Remove => self.removed += 1,
        }
        if self.entries.len() >= MAX_DIFF_ENTRIES {
            self.truncated = true;
            return;
        }
        let json = |v: Option<&T>| v.and_then(|v| serde_json::to_value(v).ok());
        self.entries.push(DiffEntry {
            op,
            kind: kind.into(),
            key: key.into(),
            before: json(before),
            after: json(after),
        });
    }

    /// Compares two keyed sets of one kind; returns (added or changed, removed) keys.
    fn compare<T: Serialize + PartialEq>(
        &mut self,
        kind: &str,
        current: &BTreeMap<String, T>,
        wanted: &BTreeMap<String, T>,
    ) -> (Vec<String>, Vec<String>) {
        let mut upserts = Vec::new();
        for (key, want) in wanted {
            match current.get(key) {
                None => self.push(DiffOp::Add, kind, key, None, Some(want)),
                Some(have) if have != want => self.push(DiffOp::Change, kind, key, Some(have), Some(want)),
                Some(_) => continue,
            }
            upserts.push(key.clone());
        }
        let mut removes = Vec::new();
        for (key, have) in current {
            if !wanted.contains_key(key) {
                self.push(DiffOp::Remove, kind, key, Some(have), None);
                removes.push(key.clone());
            }
        }
        (upserts, removes)
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compact = |v: &Option<serde_json::Value>| v.as_ref().map(ToString::to_string).unwrap_or_default();
        for e in &self.entries {
            match e.op {
                DiffOp::Add => writeln!(f, "+ {} {} {}", e.kind, e.key, compact(&e.after))?,
                DiffOp::Remove => writeln!(f, "- {} {} {}", e.kind, e.key, compact(&e.before))?,
                DiffOp::Change => {
                    writeln!(f, "~ {} {} {} -> {}", e.kind, e.key, compact(&e.before), compact(&e.after))?;
                }
            }
        }
        if self.truncated {
            writeln!(f, "… ({} entries shown)", self.entries.len())?;
        }
        write!(f, "{} to add, {} to change, {} to remove", self.added, self.changed, self.removed)
    }
}

fn keyed<T: Clone>(items: &[T], key: impl Fn(&T) -> String) -> BTreeMap<String, T> {
    items.iter().map(|i| (key(i), i.clone())).collect()
}

impl Store {
    /// The whole state as a configuration; `base` supplies the file-only sections (`edge`,
    /// `control`, `xdp`). API tokens and the audit log are not part of it.
    pub fn export(&self, base: &Config) -> Result<Config, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let config = Config {
            edge: base.edge.clone(),
            control: base.control.clone(),
            xdp: base.xdp.clone(),
            health: base.health.clone(),
            trunks: all_trunks(&tx)?,
            targets: all_targets(&tx)?,
            dids: all_dids(&tx)?,
            did_ranges: all_blocks(&tx)?.into_iter().map(|b| b.into_range()).collect(),
            blocklist: all_blocked(&tx)?
                .into_iter()
                .map(|b| BlockEntry { cidr: b.cidr, reason: b.reason, expires: b.expires })
                .collect(),
        };
        tx.finish()?;
        Ok(config)
    }

    /// What importing `config` would change (a dry run: nothing is written).
    pub fn diff_config(&self, config: &Config) -> Result<Diff, StoreError> {
        config.validate().map_err(StoreError::Invalid)?;
        let tx = self.conn.unchecked_transaction()?;
        let diff = diff_and_apply(&tx, config, false)?;
        tx.finish()?;
        Ok(diff)
    }

    /// Makes the store hold exactly the trunks, targets, DIDs, number blocks and blocklist of
    /// `config` (the file-only sections are ignored), in one transaction; returns the diff.
    pub fn import_config(&mut self, actor: &str, config: &Config) -> Result<(Diff, Committed), StoreError> {
        config.validate().map_err(StoreError::Invalid)?;
        self.write(|tx| {
            let diff = diff_and_apply(tx, config, true)?;
            let summary =
                serde_json::json!({ "added": diff.added, "changed": diff.changed, "removed": diff.removed });
            audit::<(), _>(tx, actor, "import", "config", "", None, Some(&summary))?;
            Ok((diff, PolicyChange::Rebuild))
        })
    }
}

fn diff_and_apply(tx: &rusqlite::Transaction<'_>, config: &Config, apply: bool) -> Result<Diff, StoreError> {
    let mut diff = Diff::default();
    let targets = diff.compare(
        "target",
        &keyed(&all_targets(tx)?, |t| t.name.clone()),
        &keyed(&config.targets, |t| t.name.clone()),
    );
    let trunks = diff.compare(
        "trunk",
        &keyed(&all_trunks(tx)?, |t| t.name.clone()),
        &keyed(&config.trunks, |t| t.name.clone()),
    );
    let current_blocks = all_blocks(tx)?;
    let block_ids: HashMap<String, i64> = current_blocks.iter().map(|b| (b.key(), b.id)).collect();
    let current_ranges =
        keyed(&current_blocks.into_iter().map(|b| b.into_range()).collect::<Vec<_>>(), range_key);
    let wanted_ranges = keyed(&config.did_ranges, range_key);
    let ranges = diff.compare("did_range", &current_ranges, &wanted_ranges);
    let current_blocked: Vec<BlockEntry> = all_blocked(tx)?
        .into_iter()
        .map(|b| BlockEntry { cidr: b.cidr, reason: b.reason, expires: b.expires })
        .collect();
    let blocked = diff.compare(
        "blocklist",
        &keyed(&current_blocked, |b| b.cidr.to_string()),
        &keyed(&config.blocklist, |b| b.cidr.to_string()),
    );
    let wanted_dids = keyed(&config.dids, |d| d.number.clone());
    let current_dids = keyed(&all_dids(tx)?, |d| d.number.clone());
    let dids = diff.compare("did", &current_dids, &wanted_dids);
    if !apply {
        return Ok(diff);
    }

    // References are checked at commit, once every row is in place.
    tx.pragma_update(None, "defer_foreign_keys", "ON")?;
    for number in &dids.1 {
        tx.prepare_cached("DELETE FROM did WHERE number = ?1")?.execute([number])?;
    }
    for key in &ranges.1 {
        if let Some(id) = block_ids.get(key) {
            tx.prepare_cached("DELETE FROM did_block WHERE id = ?1")?.execute([id])?;
        }
    }
    for cidr in &blocked.1 {
        tx.prepare_cached("DELETE FROM blocklist WHERE cidr = ?1")?.execute([cidr])?;
    }
    for name in &trunks.1 {
        tx.prepare_cached("DELETE FROM trunk WHERE name = ?1")?.execute([name])?;
    }
    for name in &targets.1 {
        tx.prepare_cached("DELETE FROM target WHERE name = ?1")?.execute([name])?;
    }
    for name in &targets.0 {
        if let Some(t) = config.targets.iter().find(|t| &t.name == name) {
            write_target(tx, t)?;
        }
    }
    // A source moving between trunks leaves its old trunk first.
    let owner: HashMap<String, &str> = config
        .trunks
        .iter()
        .flat_map(|t| t.sources.iter().map(|s| (s.to_string(), t.name.as_str())))
        .collect();
    {
        let mut stmt = tx.prepare("SELECT cidr, trunk FROM trunk_source")?;
        let rows: Vec<(String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        for (cidr, trunk) in rows {
            if owner.get(&cidr) != Some(&trunk.as_str()) {
                tx.prepare_cached("DELETE FROM trunk_source WHERE cidr = ?1")?.execute([&cidr])?;
            }
        }
    }
    for name in &trunks.0 {
        if let Some(t) = config.trunks.iter().find(|t| &t.name == name) {
            write_trunk(tx, t)?;
        }
    }
    for key in &ranges.0 {
        if let Some(id) = block_ids.get(key) {
            tx.prepare_cached("DELETE FROM did_block WHERE id = ?1")?.execute([id])?;
        }
        if let Some(r) = wanted_ranges.get(key) {
            insert_block(tx, r)?;
        }
    }
    for cidr in &blocked.0 {
        if let Some(b) = config.blocklist.iter().find(|b| &b.cidr.to_string() == cidr) {
            write_blocked(tx, b)?;
        }
    }
    let today: String = tx.query_row("SELECT date('now')", [], |r| r.get(0))?;
    for number in &dids.0 {
        if let Some(d) = wanted_dids.get(number) {
            let mut d: Did = d.clone();
            match d.status {
                DidStatus::InUse => d.free_since = None,
                DidStatus::Free => {
                    d.free_since.get_or_insert_with(|| today.clone());
                }
            }
            write_did(tx, &d)?;
        }
    }
    Ok(diff)
}
