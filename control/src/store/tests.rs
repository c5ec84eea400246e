//! Store tests on real database files in a temporary directory.

use super::*;
use crate::config::{Did, DidStatus, Target, Trunk};
use crate::testutil::TempDir;

const SEED: &str = r#"
[control]
api = "127.0.0.1:0"
db = "unused.db"
[[trunk]]
name = "carrier-a"
sources = ["203.0.113.0/24"]
cps = 200
max_calls = 5000
[[target]]
name = "pbx1"
uris = ["sip:10.0.0.10:5060"]
[[target]]
name = "pbx2"
uris = ["sip:10.0.0.11:5060"]
[[did]]
number = "+15551230000"
target = "pbx1"
customer = "acme"
[[did_range]]
prefix = "+1555124"
target = "pbx1"
max_calls = 20
customer = "acme"
tag = "block-7"
[[blocklist]]
cidr = "198.51.100.7/32"
reason = "scanner"
"#;

fn seeded(tag: &str) -> (TempDir, Store) {
    let dir = TempDir::new(tag);
    let mut store = Store::open(&dir.db()).unwrap();
    assert!(store.seed_if_empty(&Config::from_toml(SEED).unwrap()).unwrap());
    (dir, store)
}

fn fields(e: StoreError) -> Vec<String> {
    match e {
        StoreError::Invalid(errors) => errors.into_iter().map(|e| e.field).collect(),
        other => panic!("expected field errors, got {other}"),
    }
}

#[test]
fn migrations_apply_once_and_refuse_newer_schemas() {
    let dir = TempDir::new("migrate");
    let store = Store::open(&dir.db()).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::SCHEMA_VERSION);
    let mode: String = store.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    drop(store);
    // Reopening applies nothing and keeps the data.
    let store = Store::open(&dir.db()).unwrap();
    assert!(store.is_empty().unwrap());
    store.conn.pragma_update(None, "user_version", schema::SCHEMA_VERSION + 1).unwrap();
    drop(store);
    assert!(matches!(Store::open(&dir.db()), Err(StoreError::SchemaTooNew { .. })));
}

#[test]
fn seeding_happens_only_on_an_empty_store() {
    let (_dir, mut store) = seeded("seed");
    let counts = store.counts().unwrap();
    assert_eq!(
        (counts.trunks, counts.targets, counts.dids, counts.blocks, counts.blocklist),
        (1, 2, 1, 1, 1)
    );
    assert_eq!(counts.acl, 1);
    let v = store.policy_version().unwrap();
    assert!(!store.seed_if_empty(&Config::embedded_default()).unwrap());
    assert_eq!(store.policy_version().unwrap(), v);
    assert_eq!(store.did("+15551230000").unwrap().customer.as_deref(), Some("acme"));
}

#[test]
fn writes_are_audited_with_before_and_after() {
    let (_dir, mut store) = seeded("audit");
    let v0 = store.policy_version().unwrap();
    let mut did = Did::new("+15551230001", "pbx1");
    let (_, c) = store.put_did("alice", &did, WriteMode::Create).unwrap();
    assert_eq!(c.version, v0 + 1);
    assert_eq!(c.change.did_target(), Some((did.number.as_str(), Some("pbx1"))));
    did.target = "pbx2".into();
    store.put_did("bob", &did, WriteMode::Upsert).unwrap();
    store.delete_did("carol", &did.number).unwrap();
    let log = store.audit(Some("did"), Some(&did.number), &Page::default()).unwrap().items;
    let summary: Vec<(&str, &str)> = log.iter().map(|e| (e.actor.as_str(), e.action.as_str())).collect();
    assert_eq!(summary, [("alice", "create"), ("bob", "update"), ("carol", "delete")]);
    assert_eq!(log[1].before.as_ref().unwrap()["target"], "pbx1");
    assert_eq!(log[1].after.as_ref().unwrap()["target"], "pbx2");
    assert!(log[2].after.is_none());
    assert!(log[0].at.ends_with('Z'));
    assert!(matches!(store.did(&did.number), Err(StoreError::NotFound { .. })));
}

#[test]
fn invalid_writes_name_fields_and_change_nothing() {
    let (_dir, mut store) = seeded("invalid");
    let v = store.policy_version().unwrap();
    let audit_len = store.counts().unwrap().audit;
    let bad = Did { customer: Some("x\u{7}".into()), ..Did::new("15551230001", "nowhere") };
    let mut got = fields(store.put_did("t", &bad, WriteMode::Upsert).unwrap_err());
    got.sort();
    assert_eq!(got, ["customer", "number", "target"]);
    let trunk = Trunk {
        cps: 0,
        sources: vec!["203.0.113.0/24".parse().unwrap()],
        ..store.trunk("carrier-a").unwrap()
    };
    let trunk = Trunk { name: "other".into(), ..trunk };
    let mut got = fields(store.put_trunk("t", &trunk, WriteMode::Create).unwrap_err());
    got.sort();
    assert_eq!(got, ["cps", "sources[0]"], "a CIDR of another trunk is refused");
    assert!(matches!(
        store.put_target(
            "t",
            &Target { name: "pbx1".into(), uris: vec!["sip:x".into()], weights: None, overflow: None },
            WriteMode::Create
        ),
        Err(StoreError::Exists { .. })
    ));
    assert!(matches!(store.delete_target("t", "pbx1"), Err(StoreError::Conflict(_))));
    assert_eq!(store.policy_version().unwrap(), v);
    assert_eq!(store.counts().unwrap().audit, audit_len);
}

#[test]
fn free_dids_get_a_date_and_leave_routing() {
    let (_dir, mut store) = seeded("free");
    let did = Did { status: DidStatus::Free, ..store.did("+15551230000").unwrap() };
    let (stored, c) = store.put_did("t", &did, WriteMode::Upsert).unwrap();
    let date = stored.free_since.clone().unwrap();
    assert!(crate::config::check_date(&date).is_ok(), "{date}");
    assert_eq!(c.change.did_target(), Some((did.number.as_str(), None)));
    assert!(store.routed_pairs().1.is_empty());
    let back = Did { status: DidStatus::InUse, ..stored };
    let (stored, _) = store.put_did("t", &back, WriteMode::Upsert).unwrap();
    assert_eq!(stored.free_since, None);
    assert_eq!(store.routed_pairs().1, [("+15551230000".to_string(), "pbx1".to_string())]);
}

#[test]
fn search_filters_paginate_and_vanity() {
    let (_dir, mut store) = seeded("search");
    let csv = "number,target,customer,group\n\
               +18003569377,pbx1,florist,shop\n\
               +18883569377,pbx2,florist,shop\n\
               +18003569378,pbx1,other,\n\
               +442079460000,pbx2,uk,\n";
    store.import_dids_csv("t", csv.as_bytes()).unwrap();
    let q = |q: DidQuery| {
        store
            .search_dids(&q, &Page::default())
            .unwrap()
            .items
            .into_iter()
            .map(|d| d.number)
            .collect::<Vec<_>>()
    };
    assert_eq!(q(DidQuery { vanity: Some("1800%FLOWERS".into()), ..Default::default() }), ["+18003569377"]);
    assert_eq!(
        q(DidQuery { vanity: Some("%FLOWERS".into()), ..Default::default() }),
        ["+18003569377", "+18883569377"]
    );
    assert_eq!(q(DidQuery { vanity: Some("1-800-FLOWERS".into()), ..Default::default() }), ["+18003569377"]);
    assert_eq!(
        q(DidQuery { prefix: Some("+1800".into()), ..Default::default() }),
        ["+18003569377", "+18003569378"]
    );
    assert_eq!(
        q(DidQuery { customer: Some("florist".into()), target: Some("pbx2".into()), ..Default::default() }),
        ["+18883569377"]
    );
    assert_eq!(q(DidQuery { group: Some("shop".into()), ..Default::default() }).len(), 2);
    assert_eq!(q(DidQuery { status: Some("in-use".into()), ..Default::default() }).len(), 5);
    let bad = store.search_dids(
        &DidQuery { vanity: Some("1800*".into()), status: Some("gone".into()), ..Default::default() },
        &Page::default(),
    );
    let mut got = fields(bad.unwrap_err());
    got.sort();
    assert_eq!(got, ["status", "vanity"]);

    // Pagination walks every DID once, in order.
    let mut seen = Vec::new();
    let mut page = Page { limit: Some(2), after: None };
    loop {
        let listing = store.search_dids(&DidQuery::default(), &page).unwrap();
        assert!(listing.items.len() <= 2);
        seen.extend(listing.items.into_iter().map(|d| d.number));
        match listing.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 5);
    assert!(
        fields(store.list_trunks(&Page { limit: Some(0), after: None }).unwrap_err())
            .contains(&"limit".to_string())
    );
}

#[test]
fn vanity_keypad_mapping() {
    assert_eq!(vanity_to_digits("1800FLOWERS").unwrap(), "+18003569377");
    assert_eq!(vanity_to_digits("+1 (800) GO-%").unwrap(), "+180046%");
    assert!(vanity_to_digits("%").is_err());
    assert!(vanity_to_digits("1800_").is_err());
}

#[test]
fn csv_import_is_all_or_nothing() {
    let (_dir, mut store) = seeded("csv");
    let before = store.counts().unwrap();
    let v = store.policy_version().unwrap();
    let csv = "number,target\n+15550000001,pbx1\n+15550000002,nowhere\nbogus,pbx1\n+15550000004,pbx1\n";
    let got = fields(store.import_dids_csv("t", csv.as_bytes()).unwrap_err());
    assert_eq!(got, ["line 3.target", "line 4.number"]);
    assert_eq!(store.counts().unwrap().dids, before.dids);
    assert_eq!(store.policy_version().unwrap(), v);
    let got = fields(store.import_dids_csv("t", "number,pbx\n".as_bytes()).unwrap_err());
    assert_eq!(got, ["line 1.pbx"]);

    let csv = "target,number,tag\npbx2,+15551230000,moved\npbx1,+15550000001,\n";
    let (report, c) = store.import_dids_csv("t", csv.as_bytes()).unwrap();
    assert_eq!((report.rows, report.created, report.updated), (2, 1, 1));
    assert_eq!(c.change, crate::policy::PolicyChange::Dids);
    let moved = store.did("+15551230000").unwrap();
    assert_eq!(
        (moved.target.as_str(), moved.tag.as_deref(), moved.customer.as_deref()),
        ("pbx2", Some("moved"), Some("acme"))
    );
}

#[test]
fn export_round_trips_through_the_config_parser_and_import_diffs() {
    let (_dir, mut store) = seeded("export");
    let base = Config::from_toml(SEED).unwrap();
    store
        .put_did(
            "t",
            &Did {
                status: DidStatus::Free,
                description: Some("spare".into()),
                ..Did::new("+15559990000", "pbx2")
            },
            WriteMode::Create,
        )
        .unwrap();
    let exported = store.export(&base).unwrap();
    let text = toml::to_string(&exported).unwrap();
    let parsed = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed, exported);
    assert!(store.diff_config(&parsed).unwrap().is_empty(), "re-importing an export changes nothing");

    // Edit the export: move a DID, drop the block, add a trunk that takes over nothing.
    let mut edited = parsed.clone();
    edited.dids[0].target = "pbx2".into();
    edited.did_ranges.clear();
    edited.trunks.push(Trunk {
        name: "carrier-b".into(),
        sources: vec!["192.0.2.0/24".parse().unwrap()],
        ..edited.trunks[0].clone()
    });
    let v = store.policy_version().unwrap();
    let diff = store.diff_config(&edited).unwrap();
    assert_eq!((diff.added, diff.changed, diff.removed), (1, 1, 1), "{diff}");
    assert_eq!(store.policy_version().unwrap(), v, "a dry run writes nothing");
    let (applied, c) = store.import_config("t", &edited).unwrap();
    assert_eq!(applied, diff);
    assert_eq!(c.change, crate::policy::PolicyChange::Rebuild);
    assert_eq!(store.export(&base).unwrap(), edited);

    // A source moving between trunks in one import.
    let mut swapped = edited.clone();
    let net = swapped.trunks[0].sources.pop().unwrap();
    swapped.trunks[0].sources.push("198.18.0.0/15".parse().unwrap());
    swapped.trunks[1].sources.push(net);
    store.import_config("t", &swapped).unwrap();
    assert_eq!(store.acl_entry(&net).unwrap().trunk, "carrier-b");
}

#[test]
fn tokens_are_stored_hashed_and_the_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("token");
    let mut store = Store::open(&dir.db()).unwrap();
    let file = token_file_for(&dir.db());
    assert!(file.to_string_lossy().ends_with("store.db.token"));
    let token = store.bootstrap_admin_token(&file).unwrap().unwrap();
    assert!(token.starts_with(TOKEN_PREFIX));
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(store.bootstrap_admin_token(&file).unwrap(), None, "only on the first start");
    let stored: String = store.conn.query_row("SELECT sha256 FROM api_token", [], |r| r.get(0)).unwrap();
    assert_ne!(stored, token);
    assert_eq!(stored, hash_token(&token));
    assert_eq!(store.token_name(&hash_token(&token)).unwrap().as_deref(), Some("admin"));
}

#[test]
fn blocklist_ttl_limits_and_acl() {
    let (_dir, mut store) = seeded("blocklist");
    let req = BlockRequest {
        cidr: "192.0.2.0/24".parse().unwrap(),
        reason: "flood".into(),
        ttl: Some(3600),
        expires: None,
    };
    let (row, _) = store.block_source("t", &req).unwrap();
    assert!(row.expires.is_some());
    let policy = store.load_policy(&Config::from_toml(SEED).unwrap()).unwrap();
    let entry = policy.blocklist.iter().find(|b| b.cidr == req.cidr).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(entry.expires_unix.unwrap().abs_diff(now + 3600) < 60);
    let bad = BlockRequest { ttl: Some(0), reason: String::new(), ..req.clone() };
    let mut got = fields(store.block_source("t", &bad).unwrap_err());
    got.sort();
    assert_eq!(got, ["reason", "ttl"]);
    store.unblock_source("t", &req.cidr).unwrap();
    assert_eq!(store.counts().unwrap().blocklist, 1);

    let limits = Limits { trunk: "carrier-a".into(), cps: 50, max_calls: 10, over_capacity_code: 486 };
    store.put_limits("t", &limits).unwrap();
    assert_eq!(store.trunk("carrier-a").unwrap().cps, 50);
    assert_eq!(fields(store.put_limits("t", &Limits { cps: 0, ..limits }).unwrap_err()), ["cps"]);

    let acl =
        AclEntry { cidr: "2001:db8::/32".parse().unwrap(), trunk: "carrier-a".into(), description: None };
    store.add_acl("t", &acl).unwrap();
    assert_eq!(store.trunk("carrier-a").unwrap().sources.len(), 2);
    store.delete_acl("t", &acl.cidr).unwrap();
    let last: IpNet = "203.0.113.0/24".parse().unwrap();
    assert!(matches!(store.delete_acl("t", &last), Err(StoreError::Conflict(_))));
}

use ipnet::IpNet;

#[test]
fn number_blocks_keep_their_metadata_and_call_limit() {
    let (_dir, mut store) = seeded("blockmeta");
    let base = Config::from_toml(SEED).unwrap();
    let seeded = &store.export(&base).unwrap().did_ranges[0];
    assert_eq!(
        (seeded.max_calls, seeded.customer.as_deref(), seeded.tag.as_deref(), seeded.group.as_deref()),
        (Some(20), Some("acme"), Some("block-7"), None)
    );
    let block = NumberBlock {
        first: Some("+15551250000".into()),
        last: Some("+15551259999".into()),
        target: "pbx2".into(),
        max_calls: Some(3),
        group: Some("sales".into()),
        description: Some("trial range".into()),
        ..NumberBlock::default()
    };
    let (stored, _) = store.add_block("t", &block).unwrap();
    assert_eq!(store.block(stored.id).unwrap(), NumberBlock { id: stored.id, ..block.clone() });
    let bad = NumberBlock {
        first: Some("+15551260000".into()),
        last: Some("+15551260009".into()),
        max_calls: Some(0),
        ..block
    };
    assert_eq!(fields(store.add_block("t", &bad).unwrap_err()), ["max_calls"]);
}
