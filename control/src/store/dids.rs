//! DIDs: the inventory (number, target, customer, group, tag, status, free-since date,
//! description), search (exact, prefix, customer, group, status, target, vanity pattern) and the
//! bulk CSV import, which is one transaction however large.

use std::collections::HashSet;
use std::io::Read;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};
use serde::{Deserialize, Serialize};

use super::objects::WriteMode;
use super::{Committed, Listing, Page, Store, StoreError, audit, target_exists};
use crate::config::{Did, DidStatus, E164_MAX_DIGITS, FieldError, check_e164, check_text};
use crate::policy::PolicyChange;

/// Most rows one CSV import may carry.
pub const MAX_IMPORT_ROWS: u64 = 20_000_000;
/// Most row errors one refused import reports (it stops reading after that many).
pub const MAX_IMPORT_ERRORS: usize = 100;

/// Search filters for DIDs; all given filters must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DidQuery {
    /// Exact E.164 number.
    pub number: Option<String>,
    /// E.164 prefix (`+1555`).
    pub prefix: Option<String>,
    /// Customer (exact).
    pub customer: Option<String>,
    /// Group (exact).
    pub group: Option<String>,
    /// `in-use` or `free`.
    pub status: Option<String>,
    /// Target (exact).
    pub target: Option<String>,
    /// Vanity pattern: digits, letters (keypad: `FLOWERS` = 3569377), `%` for any digits;
    /// `-` and spaces are ignored. Anchored at both ends: `1800%FLOWERS`, `%FLOWERS`.
    pub vanity: Option<String>,
}

/// The outcome of a CSV import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvImport {
    /// Data rows read.
    pub rows: u64,
    /// Numbers that were not in the store.
    pub created: u64,
    /// Numbers that were (a number listed twice counts once here and once in `created`/`updated`:
    /// the later row wins).
    pub updated: u64,
}

/// Maps a vanity pattern to a SQL `LIKE` pattern over E.164 numbers (`+` then digits and `%`).
pub fn vanity_to_digits(pattern: &str) -> Result<String, String> {
    let mut out = String::from("+");
    for c in pattern.strip_prefix('+').unwrap_or(pattern).chars() {
        let d = match c.to_ascii_uppercase() {
            '-' | ' ' | '(' | ')' | '.' => continue,
            c @ ('0'..='9' | '%') => c,
            'A'..='C' => '2',
            'D'..='F' => '3',
            'G'..='I' => '4',
            'J'..='L' => '5',
            'M'..='O' => '6',
            'P'..='S' => '7',
            'T'..='V' => '8',
            'W'..='Z' => '9',
            other => return Err(format!("{other:?} is not a digit, a letter or %")),
        };
        out.push(d);
    }
    let digits = out.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 || digits > E164_MAX_DIGITS {
        return Err(format!("needs 1 to {E164_MAX_DIGITS} digits or letters"));
    }
    Ok(out)
}

const DID_COLUMNS: &str = "number, target, customer, grp, tag, status, free_since, description, max_calls";

fn did_row(r: &Row<'_>) -> rusqlite::Result<Did> {
    let status: String = r.get(5)?;
    Ok(Did {
        number: r.get(0)?,
        target: r.get(1)?,
        customer: r.get(2)?,
        group: r.get(3)?,
        tag: r.get(4)?,
        status: if status == "free" { DidStatus::Free } else { DidStatus::InUse },
        free_since: r.get(6)?,
        description: r.get(7)?,
        max_calls: r.get(8)?,
    })
}

pub(super) fn get_did(conn: &Connection, number: &str) -> Result<Option<Did>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {DID_COLUMNS} FROM did WHERE number = ?1"))?;
    Ok(stmt.query_row([number], did_row).optional()?)
}

pub(super) fn all_dids(conn: &Connection) -> Result<Vec<Did>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {DID_COLUMNS} FROM did ORDER BY number"))?;
    Ok(stmt.query_map([], did_row)?.collect::<Result<Vec<_>, _>>()?)
}

/// Writes a validated DID (all columns).
pub(super) fn write_did(tx: &Transaction<'_>, d: &Did) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO did ({DID_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (number) DO UPDATE SET target = excluded.target, customer = excluded.customer,
           grp = excluded.grp, tag = excluded.tag, status = excluded.status,
           free_since = excluded.free_since, description = excluded.description,
           max_calls = excluded.max_calls"
    ))?
    .execute(params![
        d.number,
        d.target,
        d.customer,
        d.group,
        d.tag,
        d.status.as_str(),
        d.free_since,
        d.description,
        d.max_calls
    ])?;
    Ok(())
}

/// Adds one filter to a dynamic WHERE clause.
fn filter(clauses: &mut Vec<String>, args: &mut Vec<Value>, sql: &str, value: String) {
    args.push(Value::Text(value));
    clauses.push(sql.replace('?', &format!("?{}", args.len())));
}

impl Store {
    /// One DID.
    pub fn did(&self, number: &str) -> Result<Did, StoreError> {
        get_did(&self.conn, number)?.ok_or_else(|| StoreError::NotFound { kind: "did", key: number.into() })
    }

    /// One page of the DIDs matching `q`, by number.
    pub fn search_dids(&self, q: &DidQuery, page: &Page) -> Result<Listing<Did>, StoreError> {
        let limit = page.limit()?;
        let mut errors = Vec::new();
        let (mut clauses, mut args) = (Vec::new(), Vec::new());
        if let Some(n) = &q.number {
            match check_e164(n) {
                Ok(()) => filter(&mut clauses, &mut args, "number = ?", n.clone()),
                Err(why) => errors.push(FieldError::new("number", why)),
            }
        }
        if let Some(p) = &q.prefix {
            match check_e164(p) {
                // ':' sorts right after '9': [p, p:) is every number starting with p.
                Ok(()) => {
                    filter(&mut clauses, &mut args, "number >= ?", p.clone());
                    filter(&mut clauses, &mut args, "number < ?", format!("{p}:"));
                }
                Err(why) => errors.push(FieldError::new("prefix", why)),
            }
        }
        if let Some(v) = &q.vanity {
            match vanity_to_digits(v) {
                Ok(like) => {
                    let literal = like.split('%').next().unwrap_or("+").to_owned();
                    if literal.len() > 1 {
                        filter(&mut clauses, &mut args, "number >= ?", literal.clone());
                        filter(&mut clauses, &mut args, "number < ?", format!("{literal}:"));
                    }
                    filter(&mut clauses, &mut args, "number LIKE ?", like);
                }
                Err(why) => errors.push(FieldError::new("vanity", why)),
            }
        }
        if let Some(s) = &q.status {
            match s.parse::<DidStatus>() {
                Ok(s) => filter(&mut clauses, &mut args, "status = ?", s.as_str().to_owned()),
                Err(why) => errors.push(FieldError::new("status", why)),
            }
        }
        for (column, value) in [("customer", &q.customer), ("grp", &q.group), ("target", &q.target)] {
            if let Some(v) = value {
                filter(&mut clauses, &mut args, &format!("{column} = ?"), v.clone());
            }
        }
        if let Some(a) = &page.after {
            filter(&mut clauses, &mut args, "number > ?", a.clone());
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        args.push(Value::Integer(i64::try_from(limit + 1).unwrap_or(i64::MAX)));
        let where_ =
            if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        let sql = format!("SELECT {DID_COLUMNS} FROM did {where_} ORDER BY number LIMIT ?{}", args.len());
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), did_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(Listing::from_rows(rows, limit, |d| d.number.clone()))
    }

    /// Creates or replaces one DID; returns it as stored (with `free_since` set when free).
    pub fn put_did(
        &mut self,
        actor: &str,
        did: &Did,
        mode: WriteMode,
    ) -> Result<(Did, Committed), StoreError> {
        self.write(|tx| {
            let before = get_did(tx, &did.number)?;
            if mode == WriteMode::Create && before.is_some() {
                return Err(StoreError::Exists { kind: "did", key: did.number.clone() });
            }
            let mut errors = did.check();
            if !did.target.is_empty() && !target_exists(tx, &did.target)? {
                errors.push(FieldError::new("target", format!("no target named {:?}", did.target)));
            }
            if !errors.is_empty() {
                return Err(StoreError::Invalid(errors));
            }
            let mut stored = did.clone();
            stored.free_since = match did.status {
                DidStatus::InUse => None,
                DidStatus::Free => match (&did.free_since, &before) {
                    (Some(d), _) => Some(d.clone()),
                    (None, Some(b)) if b.status == DidStatus::Free && b.free_since.is_some() => {
                        b.free_since.clone()
                    }
                    _ => Some(tx.query_row("SELECT date('now')", [], |r| r.get(0))?),
                },
            };
            write_did(tx, &stored)?;
            let action = if before.is_some() { "update" } else { "create" };
            audit(tx, actor, action, "did", &did.number, before.as_ref(), Some(&stored))?;
            let routed = (stored.status == DidStatus::InUse).then(|| Box::new(stored.clone()));
            let change = PolicyChange::Did { number: stored.number.clone(), routed };
            Ok((stored, change))
        })
    }

    /// Deletes one DID.
    pub fn delete_did(&mut self, actor: &str, number: &str) -> Result<Committed, StoreError> {
        self.write(|tx| {
            let before = get_did(tx, number)?
                .ok_or_else(|| StoreError::NotFound { kind: "did", key: number.into() })?;
            tx.prepare_cached("DELETE FROM did WHERE number = ?1")?.execute([number])?;
            audit::<_, ()>(tx, actor, "delete", "did", number, Some(&before), None)?;
            Ok(((), PolicyChange::Did { number: number.into(), routed: None }))
        })
        .map(|((), c)| c)
    }

    /// Imports DIDs from CSV (`number,target[,customer,group,tag]` with a header row, columns in
    /// any order) in ONE transaction: every row applies, or (on any bad row, read error or crash)
    /// none does. Imported numbers become `in-use`; their description is kept.
    pub fn import_dids_csv(
        &mut self,
        actor: &str,
        input: impl Read,
    ) -> Result<(CsvImport, Committed), StoreError> {
        self.write(|tx| {
            let before: u64 = tx.query_row("SELECT count(*) FROM did", [], |r| r.get(0))?;
            let rows = import_rows(tx, input)?;
            let after: u64 = tx.query_row("SELECT count(*) FROM did", [], |r| r.get(0))?;
            let created = after - before;
            let report = CsvImport { rows, created, updated: rows - created };
            audit::<(), _>(tx, actor, "import", "did", "csv", None, Some(&report))?;
            Ok((report, PolicyChange::Dids))
        })
    }
}

/// Column positions of a DID CSV.
struct Columns {
    number: usize,
    target: usize,
    customer: Option<usize>,
    group: Option<usize>,
    tag: Option<usize>,
}

fn columns(header: &csv::StringRecord) -> Result<Columns, StoreError> {
    let mut found: [Option<usize>; 5] = [None; 5];
    const NAMES: [&str; 5] = ["number", "target", "customer", "group", "tag"];
    for (i, h) in header.iter().enumerate() {
        let slot = NAMES.iter().position(|n| n.eq_ignore_ascii_case(h)).ok_or_else(|| {
            StoreError::invalid(
                format!("line 1.{h}"),
                "unknown column (expected number,target[,customer,group,tag])",
            )
        })?;
        if found[slot].replace(i).is_some() {
            return Err(StoreError::invalid(format!("line 1.{h}"), "column listed twice"));
        }
    }
    let [number, target, customer, group, tag] = found;
    match (number, target) {
        (Some(number), Some(target)) => Ok(Columns { number, target, customer, group, tag }),
        _ => {
            Err(StoreError::invalid("line 1", "the header must name at least the columns number and target"))
        }
    }
}

fn import_rows(tx: &Transaction<'_>, input: impl Read) -> Result<u64, StoreError> {
    let targets: HashSet<String> = {
        let mut stmt = tx.prepare("SELECT name FROM target")?;
        stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(false).from_reader(input);
    let read_err = |e: csv::Error| match e.kind() {
        csv::ErrorKind::Io(io) => StoreError::Read(io.to_string()),
        _ => StoreError::invalid(
            format!("line {}", e.position().map_or(0, csv::Position::line)),
            e.to_string(),
        ),
    };
    let cols = columns(reader.headers().map_err(read_err)?)?;
    let mut insert = tx.prepare(
        "INSERT INTO did (number, target, customer, grp, tag, status, free_since) VALUES (?1, ?2, ?3, ?4, ?5, 'in-use', NULL)
         ON CONFLICT (number) DO UPDATE SET target = excluded.target,
           customer = coalesce(excluded.customer, customer), grp = coalesce(excluded.grp, grp),
           tag = coalesce(excluded.tag, tag), status = 'in-use', free_since = NULL",
    )?;
    let mut record = csv::StringRecord::new();
    let (mut rows, mut errors) = (0u64, Vec::new());
    while reader.read_record(&mut record).map_err(read_err)? {
        rows += 1;
        let line = record.position().map_or(rows + 1, csv::Position::line);
        if rows > MAX_IMPORT_ROWS {
            return Err(StoreError::invalid(
                format!("line {line}"),
                format!("more than {MAX_IMPORT_ROWS} rows"),
            ));
        }
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let number = field(Some(cols.number)).unwrap_or_default();
        let target = field(Some(cols.target)).unwrap_or_default();
        let mut bad = |f: &str, why: String| errors.push(FieldError::new(format!("line {line}.{f}"), why));
        if let Err(why) = check_e164(number) {
            bad("number", why);
        }
        if !targets.contains(target) {
            bad("target", format!("no target named {target:?}"));
        }
        for (name, col) in [("customer", cols.customer), ("group", cols.group), ("tag", cols.tag)] {
            if let Some(v) = field(col)
                && let Err(why) = check_text(v)
            {
                bad(name, why);
            }
        }
        if errors.len() >= MAX_IMPORT_ERRORS {
            break;
        }
        if errors.is_empty() {
            insert.execute(params![
                number,
                target,
                field(cols.customer),
                field(cols.group),
                field(cols.tag)
            ])?;
        }
    }
    if errors.is_empty() { Ok(rows) } else { Err(StoreError::Invalid(errors)) }
}
