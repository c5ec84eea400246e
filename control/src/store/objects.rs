//! Trunks (with their sources: the allow-list, and their limits), targets, number blocks and the
//! blocklist. Every write validates first and changes nothing when it refuses.

use std::collections::HashSet;

use ipnet::IpNet;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::{Deserialize, Serialize};

use super::{Committed, Listing, NOW, Page, Store, StoreError, audit, target_exists};
use crate::config::{
    BlockEntry, DidRange, FieldError, MAX_CALLS, MAX_CPS, MAX_SOURCES_PER_TRUNK, Target, Trunk, check_text,
};
use crate::policy::PolicyChange;

/// Longest accepted blocklist TTL, in seconds (one year); longer blocks are permanent ones.
pub const MAX_BLOCK_TTL_SECS: u64 = 366 * 24 * 3600;

/// One allow-list entry: a source network and the trunk it identifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclEntry {
    /// Source network.
    pub cidr: IpNet,
    /// The trunk it belongs to.
    pub trunk: String,
    /// Operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A trunk's admission limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The trunk (from the path on writes).
    #[serde(default)]
    pub trunk: String,
    /// New calls per second.
    pub cps: u32,
    /// Concurrent dialogs.
    pub max_calls: u32,
    /// Answer over `max_calls`: 503 or 486. Default: 503.
    #[serde(default = "default_over_capacity_code")]
    pub over_capacity_code: u16,
}

fn default_over_capacity_code() -> u16 {
    503
}

/// A number block (`[[did_range]]`) with its store id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberBlock {
    /// Store id (the pagination key and the path key); ignored on create.
    #[serde(default)]
    pub id: i64,
    /// E.164 prefix: every number under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// First number of an inclusive range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    /// Last number of an inclusive range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Target name.
    pub target: String,
    /// Concurrent calls to the whole block; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// Customer the block is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Group within the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Free-form tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl NumberBlock {
    /// The configuration form.
    pub fn into_range(self) -> DidRange {
        DidRange {
            prefix: self.prefix,
            first: self.first,
            last: self.last,
            target: self.target,
            max_calls: self.max_calls,
            customer: self.customer,
            group: self.group,
            tag: self.tag,
            description: self.description,
        }
    }

    fn range(&self) -> DidRange {
        self.clone().into_range()
    }

    /// The block's natural key: its prefix, or `first-last`.
    pub fn key(&self) -> String {
        range_key(&self.range())
    }
}

pub(super) fn range_key(r: &DidRange) -> String {
    match (&r.prefix, &r.first, &r.last) {
        (Some(p), _, _) => p.clone(),
        (None, Some(f), Some(l)) => format!("{f}-{l}"),
        _ => String::new(),
    }
}

/// A blocklist entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// Blocked network.
    pub cidr: IpNet,
    /// Why.
    pub reason: String,
    /// When it was blocked (UTC).
    pub created: String,
    /// When the block ends (UTC); absent: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// A request to block a source: for `ttl` seconds, until `expires`, or (neither) for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// Network to block.
    pub cidr: IpNet,
    /// Why (required: the audit log and the security team read it).
    pub reason: String,
    /// Seconds from now until the block ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// UTC time the block ends, `YYYY-MM-DDTHH:MM:SSZ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

fn page_after(page: &Page) -> Option<&str> {
    page.after.as_deref()
}

fn trunk_row(r: &Row<'_>) -> rusqlite::Result<Trunk> {
    Ok(Trunk {
        name: r.get(0)?,
        sources: Vec::new(),
        cps: r.get(1)?,
        max_calls: r.get(2)?,
        country_code: r.get(3)?,
        national_prefix: r.get(4)?,
        international_prefix: r.get(5)?,
        emergency_target: r.get(6)?,
        over_capacity_code: r.get(7)?,
        emergency_numbers: json_column(r, 8)?,
        min_national_digits: r.get(9)?,
    })
}

const TRUNK_COLUMNS: &str = "name, cps, max_calls, country_code, national_prefix, international_prefix, \
                             emergency_target, over_capacity_code, emergency_numbers, min_national_digits";

/// A nullable JSON column.
fn json_column<T: serde::de::DeserializeOwned>(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<T>> {
    let Some(text) = r.get::<_, Option<String>>(i)? else { return Ok(None) };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// A value as a nullable JSON column.
fn to_json<T: serde::Serialize>(value: &Option<T>) -> Result<Option<String>, StoreError> {
    value
        .as_ref()
        .map(|v| serde_json::to_string(v).map_err(|e| StoreError::Conflict(e.to_string())))
        .transpose()
}

fn parse_cidr(s: &str) -> rusqlite::Result<IpNet> {
    s.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn sources_of(conn: &Connection, trunk: &str) -> Result<Vec<IpNet>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT cidr FROM trunk_source WHERE trunk = ?1 ORDER BY cidr")?;
    let rows = stmt.query_map([trunk], |r| parse_cidr(&r.get::<_, String>(0)?))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn with_sources(conn: &Connection, mut trunks: Vec<Trunk>) -> Result<Vec<Trunk>, StoreError> {
    for t in &mut trunks {
        t.sources = sources_of(conn, &t.name)?;
    }
    Ok(trunks)
}

pub(super) fn all_trunks(conn: &Connection) -> Result<Vec<Trunk>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {TRUNK_COLUMNS} FROM trunk ORDER BY name"))?;
    let trunks = stmt.query_map([], trunk_row)?.collect::<Result<Vec<_>, _>>()?;
    with_sources(conn, trunks)
}

pub(super) fn get_trunk(conn: &Connection, name: &str) -> Result<Option<Trunk>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {TRUNK_COLUMNS} FROM trunk WHERE name = ?1"))?;
    let Some(t) = stmt.query_row([name], trunk_row).optional()? else { return Ok(None) };
    Ok(with_sources(conn, vec![t])?.pop())
}

fn target_row(r: &Row<'_>) -> rusqlite::Result<Target> {
    let uris: String = r.get(1)?;
    let uris = serde_json::from_str(&uris).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Target { name: r.get(0)?, uris, weights: json_column(r, 2)?, overflow: r.get(3)? })
}

pub(super) fn all_targets(conn: &Connection) -> Result<Vec<Target>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT name, uris, weights, overflow FROM target ORDER BY name")?;
    Ok(stmt.query_map([], target_row)?.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn get_target(conn: &Connection, name: &str) -> Result<Option<Target>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT name, uris, weights, overflow FROM target WHERE name = ?1")?;
    Ok(stmt.query_row([name], target_row).optional()?)
}

/// The columns [`block_row`] reads, in order.
const BLOCK_COLUMNS: &str = "id, prefix, first, last, target, max_calls, customer, grp, tag, description";

fn block_row(r: &Row<'_>) -> rusqlite::Result<NumberBlock> {
    Ok(NumberBlock {
        id: r.get(0)?,
        prefix: r.get(1)?,
        first: r.get(2)?,
        last: r.get(3)?,
        target: r.get(4)?,
        max_calls: r.get(5)?,
        customer: r.get(6)?,
        group: r.get(7)?,
        tag: r.get(8)?,
        description: r.get(9)?,
    })
}

pub(super) fn all_blocks(conn: &Connection) -> Result<Vec<NumberBlock>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {BLOCK_COLUMNS} FROM did_block ORDER BY id"))?;
    Ok(stmt.query_map([], block_row)?.collect::<Result<Vec<_>, _>>()?)
}

fn blocked_row(r: &Row<'_>) -> rusqlite::Result<Blocked> {
    Ok(Blocked {
        cidr: parse_cidr(&r.get::<_, String>(0)?)?,
        reason: r.get(1)?,
        created: r.get(2)?,
        expires: r.get(3)?,
    })
}

/// Entries in force with their expiry in Unix seconds.
pub(super) fn blocklist_in_force(conn: &Connection) -> Result<Vec<(IpNet, Option<u64>)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT cidr, unixepoch(expires) FROM blocklist WHERE expires IS NULL OR expires > {NOW} ORDER BY cidr"
    ))?;
    let rows = stmt.query_map([], |r| Ok((parse_cidr(&r.get::<_, String>(0)?)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn all_blocked(conn: &Connection) -> Result<Vec<Blocked>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT cidr, reason, created, expires FROM blocklist WHERE expires IS NULL OR expires > {NOW} ORDER BY cidr"
    ))?;
    Ok(stmt.query_map([], blocked_row)?.collect::<Result<Vec<_>, _>>()?)
}

/// Writes a validated trunk row and makes its sources exactly `t.sources`.
pub(super) fn write_trunk(tx: &Transaction<'_>, t: &Trunk) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO trunk ({TRUNK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (name) DO UPDATE SET cps = excluded.cps, max_calls = excluded.max_calls,
           country_code = excluded.country_code, national_prefix = excluded.national_prefix,
           international_prefix = excluded.international_prefix,
           emergency_target = excluded.emergency_target, over_capacity_code = excluded.over_capacity_code,
           emergency_numbers = excluded.emergency_numbers, min_national_digits = excluded.min_national_digits"
    ))?
    .execute(params![
        t.name,
        t.cps,
        t.max_calls,
        t.country_code,
        t.national_prefix,
        t.international_prefix,
        t.emergency_target,
        t.over_capacity_code,
        to_json(&t.emergency_numbers)?,
        t.min_national_digits
    ])?;
    let keep: HashSet<String> = t.sources.iter().map(ToString::to_string).collect();
    for old in sources_of(tx, &t.name)? {
        let old = old.to_string();
        if !keep.contains(&old) {
            tx.prepare_cached("DELETE FROM trunk_source WHERE cidr = ?1")?.execute([&old])?;
        }
    }
    for cidr in &keep {
        tx.prepare_cached(
            "INSERT INTO trunk_source (cidr, trunk) VALUES (?1, ?2) ON CONFLICT (cidr) DO NOTHING",
        )?
        .execute(params![cidr, t.name])?;
    }
    Ok(())
}

/// Field errors for `t` against the store: its own checks, its emergency target, sources
/// claimed by other trunks.
fn check_trunk(conn: &Connection, t: &Trunk) -> Result<Vec<FieldError>, StoreError> {
    let mut errors = t.check();
    if let Some(e) = &t.emergency_target
        && !target_exists(conn, e)?
    {
        errors.push(FieldError::new("emergency_target", format!("no target named {e:?}")));
    }
    let mut stmt = conn.prepare_cached("SELECT trunk FROM trunk_source WHERE cidr = ?1")?;
    for (j, net) in t.sources.iter().enumerate() {
        let owner: Option<String> = stmt.query_row([net.to_string()], |r| r.get(0)).optional()?;
        if let Some(owner) = owner
            && owner != t.name
        {
            errors.push(FieldError::new(
                format!("sources[{j}]"),
                format!("{net} is already a source of trunk {owner:?}"),
            ));
        }
    }
    Ok(errors)
}

fn check_limits(l: &Limits) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !(1..=MAX_CPS).contains(&l.cps) {
        errors.push(FieldError::new("cps", format!("{} is outside 1..={MAX_CPS}", l.cps)));
    }
    if !(1..=MAX_CALLS).contains(&l.max_calls) {
        errors.push(FieldError::new("max_calls", format!("{} is outside 1..={MAX_CALLS}", l.max_calls)));
    }
    if !matches!(l.over_capacity_code, 486 | 503) {
        errors.push(FieldError::new(
            "over_capacity_code",
            format!("{} must be 503 or 486", l.over_capacity_code),
        ));
    }
    errors
}

fn refuse_if(errors: Vec<FieldError>) -> Result<(), StoreError> {
    if errors.is_empty() { Ok(()) } else { Err(StoreError::Invalid(errors)) }
}

/// Whether a write may create, replace, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create; fail with [`StoreError::Exists`] when the key exists.
    Create,
    /// Create or replace.
    Upsert,
}

impl Store {
    /// One page of trunks, by name.
    pub fn list_trunks(&self, page: &Page) -> Result<Listing<Trunk>, StoreError> {
        let limit = page.limit()?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TRUNK_COLUMNS} FROM trunk WHERE ?1 IS NULL OR name > ?1 ORDER BY name LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![page_after(page), limit + 1], trunk_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing::from_rows(with_sources(&self.conn, rows)?, limit, |t| t.name.clone()))
    }

    /// One trunk.
    pub fn trunk(&self, name: &str) -> Result<Trunk, StoreError> {
        get_trunk(&self.conn, name)?.ok_or_else(|| StoreError::NotFound { kind: "trunk", key: name.into() })
    }

    /// Creates or replaces a trunk (its sources become exactly `trunk.sources`).
    pub fn put_trunk(
        &mut self,
        actor: &str,
        trunk: &Trunk,
        mode: WriteMode,
    ) -> Result<Committed, StoreError> {
        self.write(|tx| {
            let before = get_trunk(tx, &trunk.name)?;
            if mode == WriteMode::Create && before.is_some() {
                return Err(StoreError::Exists { kind: "trunk", key: trunk.name.clone() });
            }
            refuse_if(check_trunk(tx, trunk)?)?;
            write_trunk(tx, trunk)?;
            let action = if before.is_some() { "update" } else { "create" };
            audit(tx, actor, action, "trunk", &trunk.name, before.as_ref(), Some(trunk))?;
            Ok(((), PolicyChange::Admission))
        })
        .map(|((), c)| c)
    }

    /// Deletes a trunk and its sources.
    pub fn delete_trunk(&mut self, actor: &str, name: &str) -> Result<Committed, StoreError> {
        self.write(|tx| {
            let before = get_trunk(tx, name)?
                .ok_or_else(|| StoreError::NotFound { kind: "trunk", key: name.into() })?;
            tx.prepare_cached("DELETE FROM trunk WHERE name = ?1")?.execute([name])?;
            audit::<_, ()>(tx, actor, "delete", "trunk", name, Some(&before), None)?;
            Ok(((), PolicyChange::Admission))
        })
        .map(|((), c)| c)
    }

    /// One page of targets, by name.
    pub fn list_targets(&self, page: &Page) -> Result<Listing<Target>, StoreError> {
        let limit = page.limit()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, uris, weights, overflow FROM target WHERE ?1 IS NULL OR name > ?1 ORDER BY name LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![page_after(page), limit + 1], target_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing::from_rows(rows, limit, |t| t.name.clone()))
    }

    /// One target.
    pub fn target(&self, name: &str) -> Result<Target, StoreError> {
        get_target(&self.conn, name)?.ok_or_else(|| StoreError::NotFound { kind: "target", key: name.into() })
    }

    /// Creates or replaces a target.
    pub fn put_target(
        &mut self,
        actor: &str,
        target: &Target,
        mode: WriteMode,
    ) -> Result<Committed, StoreError> {
        self.write(|tx| {
            let before = get_target(tx, &target.name)?;
            if mode == WriteMode::Create && before.is_some() {
                return Err(StoreError::Exists { kind: "target", key: target.name.clone() });
            }
            refuse_if(target.check())?;
            write_target(tx, target)?;
            let action = if before.is_some() { "update" } else { "create" };
            audit(tx, actor, action, "target", &target.name, before.as_ref(), Some(target))?;
            Ok(((), PolicyChange::Admission))
        })
        .map(|((), c)| c)
    }

    /// Deletes a target nothing refers to.
    pub fn delete_target(&mut self, actor: &str, name: &str) -> Result<Committed, StoreError> {
        self.write(|tx| {
            let before =
                get_target(tx, name)?.ok_or_else(|| StoreError::NotFound { kind: "target", key: name.into() })?;
            let (dids, blocks, trunks): (i64, i64, i64) = tx.query_row(
                "SELECT (SELECT count(*) FROM did WHERE target = ?1), (SELECT count(*) FROM did_block WHERE target = ?1),
                        (SELECT count(*) FROM trunk WHERE emergency_target = ?1)",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            if dids + blocks + trunks > 0 {
                return Err(StoreError::Conflict(format!(
                    "target {name:?} is in use by {dids} DIDs, {blocks} number blocks and {trunks} trunks (emergency)"
                )));
            }
            tx.prepare_cached("DELETE FROM target WHERE name = ?1")?.execute([name])?;
            audit::<_, ()>(tx, actor, "delete", "target", name, Some(&before), None)?;
            Ok(((), PolicyChange::Admission))
        })
        .map(|((), c)| c)
    }

    /// One page of the allow-list, by CIDR (text order).
    pub fn list_acl(&self, page: &Page) -> Result<Listing<AclEntry>, StoreError> {
        let limit = page.limit()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT cidr, trunk, description FROM trunk_source WHERE ?1 IS NULL OR cidr > ?1 ORDER BY cidr LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![page_after(page), limit + 1], |r| {
                Ok(AclEntry {
                    cidr: parse_cidr(&r.get::<_, String>(0)?)?,
                    trunk: r.get(1)?,
                    description: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing::from_rows(rows, limit, |e| e.cidr.to_string()))
    }

    /// One allow-list entry.
    pub fn acl_entry(&self, cidr: &IpNet) -> Result<AclEntry, StoreError> {
        get_acl(&self.conn, cidr)?.ok_or_else(|| StoreError::NotFound { kind: "acl", key: cidr.to_string() })
    }

    /// Adds a source network to a trunk.
    pub fn add_acl(&mut self, actor: &str, entry: &AclEntry) -> Result<Committed, StoreError> {
        self.write(|tx| {
            let mut errors = Vec::new();
            if entry.cidr.trunc() != entry.cidr {
                errors.push(FieldError::new(
                    "cidr",
                    format!("{} has host bits set (did you mean {}?)", entry.cidr, entry.cidr.trunc()),
                ));
            }
            if let Some(d) = &entry.description
                && let Err(why) = check_text(d)
            {
                errors.push(FieldError::new("description", why));
            }
            match get_trunk(tx, &entry.trunk)? {
                None => errors.push(FieldError::new("trunk", format!("no trunk named {:?}", entry.trunk))),
                Some(t) if t.sources.len() >= MAX_SOURCES_PER_TRUNK => errors.push(FieldError::new(
                    "trunk",
                    format!("trunk {:?} has the most sources allowed ({MAX_SOURCES_PER_TRUNK})", entry.trunk),
                )),
                Some(_) => {}
            }
            refuse_if(errors)?;
            if let Some(owner) = get_acl(tx, &entry.cidr)? {
                return Err(StoreError::Exists {
                    kind: "acl",
                    key: format!("{} (trunk {:?})", entry.cidr, owner.trunk),
                });
            }
            tx.prepare_cached("INSERT INTO trunk_source (cidr, trunk, description) VALUES (?1, ?2, ?3)")?
                .execute(params![entry.cidr.to_string(), entry.trunk, entry.description])?;
            audit::<(), _>(tx, actor, "create", "acl", &entry.cidr.to_string(), None, Some(entry))?;
            Ok(((), PolicyChange::Admission))
        })
        .map(|((), c)| c)
    }

    /// Removes a source network (not a trunk's last one: delete the trunk instead).
    pub fn delete_acl(&mut self, actor: &str, cidr: &IpNet) -> Result<Committed, StoreError> {
        self.write(|tx| {
            let before = get_acl(tx, cidr)?
                .ok_or_else(|| StoreError::NotFound { kind: "acl", key: cidr.to_string() })?;
            let left: i64 =
                tx.query_row("SELECT count(*) FROM trunk_source WHERE trunk = ?1", [&before.trunk], |r| {
                    r.get(0)
                })?;
            if left <= 1 {
                return Err(StoreError::Conflict(format!(
                    "{cidr} is the last source of trunk {:?}: delete the trunk instead",
                    before.trunk
                )));
            }
            tx.prepare_cached("DELETE FROM trunk_source WHERE cidr = ?1")?.execute([cidr.to_string()])?;
            audit::<_, ()>(tx, actor, "delete", "acl", &cidr.to_string(), Some(&before), None)?;
            Ok(((), PolicyChange::Admission))
        })
        .map(|((), c)| c)
    }

    /// One page of trunk limits, by trunk name.
    pub fn list_limits(&self, page: &Page) -> Result<Listing<Limits>, StoreError> {
        let limit = page.limit()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, cps, max_calls, over_capacity_code FROM trunk WHERE ?1 IS NULL OR name > ?1 ORDER BY name LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![page_after(page), limit + 1], limits_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing::from_rows(rows, limit, |l| l.trunk.clone()))
    }

    /// One trunk's limits.
    pub fn limits(&self, trunk: &str) -> Result<Limits, StoreError> {
        get_limits(&self.conn, trunk)?
            .ok_or_else(|| StoreError::NotFound { kind: "trunk", key: trunk.into() })
    }

    /// Sets a trunk's limits.
    pub fn put_limits(&mut self, actor: &str, limits: &Limits) -> Result<Committed, StoreError> {
        self.write(|tx| {
            let before = get_limits(tx, &limits.trunk)?
                .ok_or_else(|| StoreError::NotFound { kind: "trunk", key: limits.trunk.clone() })?;
            refuse_if(check_limits(limits))?;
            tx.prepare_cached(
                "UPDATE trunk SET cps = ?2, max_calls = ?3, over_capacity_code = ?4 WHERE name = ?1",
            )?
            .execute(params![
                limits.trunk,
                limits.cps,
                limits.max_calls,
                limits.over_capacity_code
            ])?;
            audit(tx, actor, "update", "limits", &limits.trunk, Some(&before), Some(limits))?;
            Ok(((), PolicyChange::Admission))
        })
        .map(|((), c)| c)
    }

    /// One page of number blocks, by id.
    pub fn list_blocks(&self, page: &Page) -> Result<Listing<NumberBlock>, StoreError> {
        let limit = page.limit()?;
        let after: i64 = match &page.after {
            None => 0,
            Some(a) => {
                a.parse().map_err(|_| StoreError::invalid("after", format!("{a:?} is not a block id")))?
            }
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {BLOCK_COLUMNS} FROM did_block WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![after, limit + 1], block_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(Listing::from_rows(rows, limit, |b| b.id.to_string()))
    }

    /// One number block.
    pub fn block(&self, id: i64) -> Result<NumberBlock, StoreError> {
        get_block(&self.conn, id)?.ok_or_else(|| StoreError::NotFound { kind: "block", key: id.to_string() })
    }

    /// Adds a number block; returns it with its id.
    pub fn add_block(
        &mut self,
        actor: &str,
        block: &NumberBlock,
    ) -> Result<(NumberBlock, Committed), StoreError> {
        self.write(|tx| {
            let range = block.range();
            let mut errors = range.check();
            if !range.target.is_empty() && !target_exists(tx, &range.target)? {
                errors.push(FieldError::new("target", format!("no target named {:?}", range.target)));
            }
            refuse_if(errors)?;
            let id = insert_block(tx, &range)?
                .ok_or_else(|| StoreError::Exists { kind: "block", key: block.key() })?;
            let stored = NumberBlock { id, ..block.clone() };
            audit::<(), _>(tx, actor, "create", "block", &id.to_string(), None, Some(&stored))?;
            Ok((stored, PolicyChange::Admission))
        })
    }

    /// Deletes a number block.
    pub fn delete_block(&mut self, actor: &str, id: i64) -> Result<Committed, StoreError> {
        self.write(|tx| {
            let before = get_block(tx, id)?
                .ok_or_else(|| StoreError::NotFound { kind: "block", key: id.to_string() })?;
            tx.prepare_cached("DELETE FROM did_block WHERE id = ?1")?.execute([id])?;
            audit::<_, ()>(tx, actor, "delete", "block", &id.to_string(), Some(&before), None)?;
            Ok(((), PolicyChange::Admission))
        })
        .map(|((), c)| c)
    }

    /// One page of the blocklist entries in force, by CIDR (text order).
    pub fn list_blocklist(&self, page: &Page) -> Result<Listing<Blocked>, StoreError> {
        let limit = page.limit()?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT cidr, reason, created, expires FROM blocklist
             WHERE (?1 IS NULL OR cidr > ?1) AND (expires IS NULL OR expires > {NOW}) ORDER BY cidr LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![page_after(page), limit + 1], blocked_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing::from_rows(rows, limit, |b| b.cidr.to_string()))
    }

    /// Blocks a source (or changes an existing block's reason and expiry); purges expired ones.
    pub fn block_source(
        &mut self,
        actor: &str,
        req: &BlockRequest,
    ) -> Result<(Blocked, Committed), StoreError> {
        self.write(|tx| {
            let entry =
                BlockEntry { cidr: req.cidr, reason: req.reason.clone(), expires: req.expires.clone() };
            let mut errors = entry.check();
            match (req.ttl, &req.expires) {
                (Some(_), Some(_)) => errors.push(FieldError::new("ttl", "give ttl or expires, not both")),
                (Some(ttl), None) if !(1..=MAX_BLOCK_TTL_SECS).contains(&ttl) => {
                    errors.push(FieldError::new(
                        "ttl",
                        format!("{ttl} is outside 1..={MAX_BLOCK_TTL_SECS} seconds"),
                    ));
                }
                _ => {}
            }
            refuse_if(errors)?;
            tx.execute(&format!("DELETE FROM blocklist WHERE expires IS NOT NULL AND expires <= {NOW}"), [])?;
            let before = get_blocked(tx, &req.cidr)?;
            let expires: Option<String> = match (req.ttl, &req.expires) {
                (Some(ttl), _) => Some(tx.query_row(
                    "SELECT strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+' || ?1 || ' seconds')",
                    [ttl],
                    |r| r.get(0),
                )?),
                (None, e) => e.clone(),
            };
            let stored = write_blocked(tx, &BlockEntry { expires, ..entry })?;
            let action = if before.is_some() { "update" } else { "create" };
            audit(tx, actor, action, "blocklist", &req.cidr.to_string(), before.as_ref(), Some(&stored))?;
            Ok((stored, PolicyChange::Admission))
        })
    }

    /// Lifts a block.
    pub fn unblock_source(&mut self, actor: &str, cidr: &IpNet) -> Result<Committed, StoreError> {
        self.write(|tx| {
            let before = get_blocked(tx, cidr)?
                .ok_or_else(|| StoreError::NotFound { kind: "blocklist", key: cidr.to_string() })?;
            tx.prepare_cached("DELETE FROM blocklist WHERE cidr = ?1")?.execute([cidr.to_string()])?;
            audit::<_, ()>(tx, actor, "delete", "blocklist", &cidr.to_string(), Some(&before), None)?;
            Ok(((), PolicyChange::Admission))
        })
        .map(|((), c)| c)
    }
}

pub(super) fn write_target(tx: &Transaction<'_>, t: &Target) -> Result<(), StoreError> {
    let uris = serde_json::to_string(&t.uris).map_err(|e| StoreError::Conflict(e.to_string()))?;
    tx.prepare_cached(
        "INSERT INTO target (name, uris, weights, overflow) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET uris = excluded.uris, weights = excluded.weights,
           overflow = excluded.overflow",
    )?
    .execute(params![t.name, uris, to_json(&t.weights)?, t.overflow])?;
    Ok(())
}

/// Inserts a block; `None` when a block with the same key exists.
pub(super) fn insert_block(tx: &Transaction<'_>, r: &DidRange) -> Result<Option<i64>, StoreError> {
    let n = tx
        .prepare_cached(
            "INSERT INTO did_block (prefix, first, last, target, max_calls, customer, grp, tag, description)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            r.prefix,
            r.first,
            r.last,
            r.target,
            r.max_calls,
            r.customer,
            r.group,
            r.tag,
            r.description
        ])?;
    Ok((n == 1).then(|| tx.last_insert_rowid()))
}

/// Inserts or replaces a blocklist entry (keeping its creation time on replace).
pub(super) fn write_blocked(tx: &Transaction<'_>, e: &BlockEntry) -> Result<Blocked, StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO blocklist (cidr, reason, created, expires) VALUES (?1, ?2, {NOW}, ?3)
         ON CONFLICT (cidr) DO UPDATE SET reason = excluded.reason, expires = excluded.expires"
    ))?
    .execute(params![e.cidr.to_string(), e.reason, e.expires])?;
    get_blocked(tx, &e.cidr)?
        .ok_or_else(|| StoreError::NotFound { kind: "blocklist", key: e.cidr.to_string() })
}

fn get_acl(conn: &Connection, cidr: &IpNet) -> Result<Option<AclEntry>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT trunk, description FROM trunk_source WHERE cidr = ?1")?;
    Ok(stmt
        .query_row([cidr.to_string()], |r| {
            Ok(AclEntry { cidr: *cidr, trunk: r.get(0)?, description: r.get(1)? })
        })
        .optional()?)
}

fn limits_row(r: &Row<'_>) -> rusqlite::Result<Limits> {
    Ok(Limits { trunk: r.get(0)?, cps: r.get(1)?, max_calls: r.get(2)?, over_capacity_code: r.get(3)? })
}

fn get_limits(conn: &Connection, trunk: &str) -> Result<Option<Limits>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT name, cps, max_calls, over_capacity_code FROM trunk WHERE name = ?1")?;
    Ok(stmt.query_row([trunk], limits_row).optional()?)
}

fn get_block(conn: &Connection, id: i64) -> Result<Option<NumberBlock>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {BLOCK_COLUMNS} FROM did_block WHERE id = ?1"))?;
    Ok(stmt.query_row([id], block_row).optional()?)
}

fn get_blocked(conn: &Connection, cidr: &IpNet) -> Result<Option<Blocked>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT cidr, reason, created, expires FROM blocklist WHERE cidr = ?1")?;
    Ok(stmt.query_row([cidr.to_string()], blocked_row).optional()?)
}
