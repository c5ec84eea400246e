//! DID metadata (customer, group, tag, description), interned: every
//! distinct string is stored once, and every distinct combination once, so ten million DIDs
//! that share a few thousand customers cost a `u32` each.

use std::collections::HashMap;

use ahash::RandomState;

/// Most distinct metadata records one table holds (the DID table packs the id into 24 bits).
pub const MAX_META_RECORDS: usize = 1 << 24;
/// Most distinct metadata strings one table holds.
pub const MAX_META_STRINGS: usize = 1 << 24;

/// The id of an interned metadata record. Id 0 is the empty record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MetaId(pub(crate) u32);

/// The id of an interned string; 0 is "absent".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct StrId(u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct Record {
    customer: StrId,
    group: StrId,
    tag: StrId,
    description: StrId,
}

/// Metadata of one DID, as given (borrowed for interning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DidMeta<'a> {
    /// Customer owning the number.
    pub customer: Option<&'a str>,
    /// Group.
    pub group: Option<&'a str>,
    /// CRM tag.
    pub tag: Option<&'a str>,
    /// Free text.
    pub description: Option<&'a str>,
}

/// The metadata store is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DID metadata store is full ({MAX_META_RECORDS} records, {MAX_META_STRINGS} strings)")]
pub struct MetaFull;

/// Interned strings and records.
#[derive(Debug, Clone)]
pub struct MetaStore {
    strings: Vec<Box<str>>,
    string_ids: HashMap<Box<str>, StrId, RandomState>,
    records: Vec<Record>,
    record_ids: HashMap<Record, MetaId, RandomState>,
}

impl Default for MetaStore {
    fn default() -> Self {
        let mut store = Self {
            strings: vec!["".into()],
            string_ids: HashMap::default(),
            records: vec![Record::default()],
            record_ids: HashMap::default(),
        };
        store.record_ids.insert(Record::default(), MetaId(0));
        store
    }
}

impl MetaStore {
    /// Interns `meta`, returning the id of its record.
    pub fn intern(&mut self, meta: &DidMeta<'_>) -> Result<MetaId, MetaFull> {
        let record = Record {
            customer: self.intern_str(meta.customer)?,
            group: self.intern_str(meta.group)?,
            tag: self.intern_str(meta.tag)?,
            description: self.intern_str(meta.description)?,
        };
        if let Some(&id) = self.record_ids.get(&record) {
            return Ok(id);
        }
        if self.records.len() >= MAX_META_RECORDS {
            return Err(MetaFull);
        }
        let id = MetaId(self.records.len() as u32);
        self.records.push(record);
        self.record_ids.insert(record, id);
        Ok(id)
    }

    fn intern_str(&mut self, s: Option<&str>) -> Result<StrId, MetaFull> {
        let Some(s) = s.filter(|s| !s.is_empty()) else { return Ok(StrId(0)) };
        if let Some(&id) = self.string_ids.get(s) {
            return Ok(id);
        }
        if self.strings.len() >= MAX_META_STRINGS {
            return Err(MetaFull);
        }
        let id = StrId(self.strings.len() as u32);
        self.strings.push(s.into());
        self.string_ids.insert(s.into(), id);
        Ok(id)
    }

    /// The metadata of a record id (the empty record for an unknown id).
    pub fn get(&self, id: MetaId) -> DidMeta<'_> {
        let r = self.records.get(id.0 as usize).copied().unwrap_or_default();
        let s = |id: StrId| (id.0 != 0).then(|| self.strings.get(id.0 as usize).map(|s| &**s)).flatten();
        DidMeta { customer: s(r.customer), group: s(r.group), tag: s(r.tag), description: s(r.description) }
    }

    /// Distinct records (including the empty one).
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// Bytes held, approximately: strings once each (plus their index), records and their index.
    pub fn bytes(&self) -> usize {
        let strings: usize = self.strings.iter().map(|s| s.len()).sum();
        let per_string = 2 * size_of::<Box<str>>() + size_of::<StrId>() + 1;
        let per_record = 2 * size_of::<Record>() + size_of::<MetaId>() + 1;
        2 * strings + self.string_ids.capacity() * per_string + self.record_ids.capacity() * per_record
    }
}
