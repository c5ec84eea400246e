//! API tests over a real TCP socket on 127.0.0.1:0, with a real store in a temporary directory.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ureq::http::Method;

use super::routes;
use crate::config::Config;
use crate::policy::PolicyChange;
use crate::testutil::TempDir;
use crate::{ControlHandle, serve};

/// Longest a test waits for a published event.
const EVENT_WAIT: Duration = Duration::from_secs(5);

struct Api {
    handle: ControlHandle,
    base: String,
    token: String,
    agent: ureq::Agent,
    _dir: TempDir,
}

struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The `field` of every entry of a 400 body.
    fn fields(&self) -> Vec<String> {
        assert_eq!(self.status, 400, "{}", self.body);
        let mut f: Vec<String> = self.json()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect();
        f.sort();
        f
    }
}

fn start() -> Api {
    let dir = TempDir::new("api");
    let text = format!(
        r#"
[control]
api = "127.0.0.1:0"
db = "{}"
[[trunk]]
name = "carrier-a"
sources = ["203.0.113.0/24"]
[[target]]
name = "pbx1"
uris = ["sip:10.0.0.10:5060"]
[[target]]
name = "pbx2"
uris = ["sip:10.0.0.11:5060"]
[[did]]
number = "+15551230000"
target = "pbx1"
"#,
        dir.db().display()
    );
    let handle = serve(&Config::from_toml(&text).unwrap()).unwrap();
    assert!(handle.seeded);
    let token = handle.admin_token.clone().expect("first start creates a token");
    assert_eq!(std::fs::read_to_string(&handle.token_file).unwrap().trim(), token);
    // No connection reuse: the server closes a connection whose request body it did not read
    // (a refused POST), and a pooled connection would then fail the next request.
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_idle_connections(0).build().into();
    let base = format!("http://{}", handle.addr);
    Api { handle, base, token, agent, _dir: dir }
}

impl Api {
    fn call(&self, method: Method, path: &str, body: Option<&str>, token: Option<&str>) -> Reply {
        let mut req = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(body.unwrap_or_default().to_owned()).unwrap();
        let mut resp = self.agent.run(req).unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.body_mut().with_config().limit(1 << 30).read_to_string().unwrap();
        Reply { status, body }
    }

    fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None, Some(&self.token))
    }

    fn send(&self, method: Method, path: &str, body: &Value) -> Reply {
        self.call(method, path, Some(&body.to_string()), Some(&self.token))
    }

    fn version(&self) -> u64 {
        self.handle.publisher().current().version
    }
}

/// A concrete path for a route pattern.
fn concrete(path: &str) -> String {
    path.replace("{name}", "carrier-a")
        .replace("{number}", "%2B15551230000")
        .replace("{id}", "1")
        .replace("{cidr}", "203.0.113.0%2F24")
        .replace("{trunk}", "carrier-a")
}

/// A body for the methods that carry one.
fn body_for(m: &Method) -> Option<&'static str> {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH).then_some("{}")
}

#[test]
fn every_route_but_healthz_needs_the_token() {
    let api = start();
    assert_eq!(api.call(Method::GET, "/healthz", None, None).status, 200);
    for (path, _) in routes() {
        let doc: Value = serde_json::from_str(super::OPENAPI).unwrap();
        let methods = doc["paths"][path].as_object().unwrap_or_else(|| panic!("{path} not documented"));
        for method in methods.keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for token in [None, Some("sipedge_wrong"), Some("")] {
                let r = api.call(m.clone(), &concrete(path), body_for(&m), token);
                assert_eq!(r.status, 401, "{method} {path} with {token:?}: {}", r.body);
            }
        }
    }
    let r = api.call(Method::GET, "/v1/trunks", None, Some(&format!("{}x", api.token)));
    assert_eq!(r.status, 401);
    assert_eq!(api.get("/v1/trunks").status, 200);

    // A second token works at once and is the actor of what it changes.
    let r = api.send(Method::POST, "/v1/tokens", &json!({"name": "noc-bot"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let bot = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(api.send(Method::POST, "/v1/tokens", &json!({"name": "noc-bot"})).status, 409);
    assert_eq!(api.send(Method::POST, "/v1/tokens", &json!({"name": "no spaces"})).fields(), ["name"]);
    let r = api.call(Method::PUT, "/v1/dids/%2B15551230042", Some(r#"{"target": "pbx1"}"#), Some(&bot));
    assert_eq!(r.status, 200, "{}", r.body);
    let audit = api.get("/v1/audit?object=did&key=%2B15551230042").json();
    assert_eq!(audit["items"][0]["actor"], "noc-bot");
    let names = api.get("/v1/tokens").json();
    assert_eq!(names["items"].as_array().unwrap().len(), 2);
    assert!(!names.to_string().contains(&bot), "tokens are never listed");
}

#[test]
fn bad_input_names_each_field_and_applies_nothing() {
    let api = start();
    let v = api.version();
    let trunk = json!({"name": "b", "sources": ["10.0.0.1/8"], "cps": 0, "max_calls": 0, "emergency_target": "nowhere"});
    let r = api.send(Method::POST, "/v1/trunks", &trunk);
    assert_eq!(r.fields(), ["cps", "emergency_target", "max_calls", "sources[0]"]);
    assert_eq!(
        api.send(Method::POST, "/v1/trunks", &json!({"name": "b", "sources": [], "cpz": 1})).fields(),
        ["cpz"]
    );
    assert_eq!(
        api.send(
            Method::POST,
            "/v1/trunks",
            &json!({"name": "b", "sources": ["203.0.113.0/24"], "cps": "fast"})
        )
        .fields(),
        ["cps"]
    );
    assert_eq!(api.send(Method::POST, "/v1/dids", &json!({"number": "+15551239999"})).fields(), ["target"]);
    assert_eq!(api.call(Method::POST, "/v1/dids", Some("{not json"), Some(&api.token)).fields(), ["body"]);
    let r = api.send(
        Method::PUT,
        "/v1/dids/%2B15551230000",
        &json!({"number": "+15550000000", "target": "pbx1"}),
    );
    assert_eq!(r.fields(), ["number"], "body key must match the path");
    assert_eq!(api.get("/v1/dids?limit=0").fields(), ["limit"]);
    assert_eq!(api.get("/v1/dids?limit=many").fields(), ["limit"]);
    assert_eq!(api.get("/v1/dids?vanity=1800*").fields(), ["vanity"]);
    assert_eq!(api.get("/v1/dids?custmer=acme").fields(), ["custmer"], "a misspelt filter is refused");
    assert_eq!(api.get("/v1/trunks?page=2").fields(), ["page"]);
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(super::MAX_JSON_BODY_BYTES));
    assert_eq!(api.call(Method::POST, "/v1/targets", Some(&huge), Some(&api.token)).status, 413);
    let r = api.send(Method::POST, "/v1/blocklist", &json!({"cidr": "192.0.2.1/24", "reason": "", "ttl": 0}));
    assert_eq!(r.fields(), ["cidr", "reason", "ttl"]);

    assert_eq!(api.version(), v, "nothing was applied");
    let trunks = api.get("/v1/trunks").json();
    assert_eq!(trunks["items"].as_array().unwrap().len(), 1);
    let audit = api.get("/v1/audit").json();
    assert!(
        audit["items"].as_array().unwrap().iter().all(|e| e["actor"] != "admin"),
        "no change by the API's caller"
    );
}

#[test]
fn dids_crud_by_number_and_publish_events() {
    let api = start();
    let publisher = api.handle.publisher();
    let mut events = publisher.subscribe();
    let r = api.send(
        Method::POST,
        "/v1/dids",
        &json!({"number": "+15551230001", "target": "pbx1", "customer": "acme"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        api.send(Method::POST, "/v1/dids", &json!({"number": "+15551230001", "target": "pbx1"})).status,
        409
    );
    let r = api.send(Method::PUT, "/v1/dids/%2B15551230001", &json!({"target": "pbx2", "status": "free"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["free_since"].is_string());
    let got = api.get("/v1/dids/+15551230001").json();
    assert_eq!((got["target"].as_str(), got["status"].as_str()), (Some("pbx2"), Some("free")));
    assert_eq!(api.call(Method::DELETE, "/v1/dids/%2B15551230001", None, Some(&api.token)).status, 204);
    assert_eq!(api.get("/v1/dids/%2B15551230001").status, 404);

    let changes: Vec<PolicyChange> = (0..3).map(|_| events.try_recv().unwrap().change).collect();
    let number = "+15551230001";
    assert_eq!(
        changes.iter().map(PolicyChange::did_target).collect::<Vec<_>>(),
        [Some((number, Some("pbx1"))), Some((number, None)), Some((number, None))]
    );
    let audit = api.get("/v1/audit?object=did&key=%2B15551230001").json();
    let actions: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["create", "update", "delete"]);
    assert_eq!(audit["items"][0]["actor"], "admin");
}

#[test]
fn csv_import_streams_paginates_and_searches() {
    let api = start();
    let mut csv = String::from("number,target,customer\n");
    const ROWS: u64 = 20_000;
    for i in 0..ROWS {
        csv.push_str(&format!("+1800{:07},pbx{},c{}\n", 3_560_000 + i, 1 + i % 2, i % 7));
    }
    let r = api.call(Method::POST, "/v1/dids/import", Some(&csv), Some(&api.token));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.json()["rows"].as_u64(), r.json()["created"].as_u64()), (Some(ROWS), Some(ROWS)));
    assert_eq!(api.get("/v1/stats").json()["counts"]["dids"], ROWS + 1);

    // 1-800-FLOWERS is +1 800 356 9377: in the imported range.
    let found = api.get("/v1/dids?vanity=1800%25FLOWERS").json();
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    assert_eq!(found["items"][0]["number"], "+18003569377");

    let mut seen = 0;
    let mut path = "/v1/dids?prefix=%2B1800&customer=c3&limit=500".to_string();
    loop {
        let page = api.get(&path).json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 500 && items.iter().all(|d| d["customer"] == "c3"));
        seen += items.len();
        match page["next"].as_str() {
            Some(next) => {
                path = format!(
                    "/v1/dids?prefix=%2B1800&customer=c3&limit=500&after={}",
                    next.replace('+', "%2B")
                )
            }
            None => break,
        }
    }
    assert_eq!(seen as u64, (0..ROWS).filter(|i| i % 7 == 3).count() as u64);

    let v = api.version();
    let bad = "number,target\n+15550000001,pbx1\n+15550000002,nope\n";
    assert_eq!(
        api.call(Method::POST, "/v1/dids/import", Some(bad), Some(&api.token)).fields(),
        ["line 3.target"]
    );
    assert_eq!(api.version(), v);
    assert_eq!(api.get("/v1/dids/%2B15550000001").status, 404, "nothing from a refused import is applied");
}

#[test]
fn resources_acl_blocklist_limits_blocks() {
    let api = start();
    let r = api.send(Method::POST, "/v1/acl", &json!({"cidr": "198.18.0.0/15", "trunk": "carrier-a"}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(api.get("/v1/acl/198.18.0.0%2F15").json()["trunk"], "carrier-a");
    assert_eq!(api.get("/v1/trunks/carrier-a").json()["sources"].as_array().unwrap().len(), 2);
    let r = api.send(Method::PUT, "/v1/limits/carrier-a", &json!({"cps": 5, "max_calls": 7}));
    assert_eq!(r.status, 200, "{}", r.body);
    let policy = api.handle.publisher().current();
    assert_eq!((policy.config.trunks[0].cps, policy.config.trunks[0].max_calls), (5, 7));
    let r = api.send(
        Method::POST,
        "/v1/blocklist",
        &json!({"cidr": "192.0.2.0/24", "reason": "SIP scanner", "ttl": 600}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(api.handle.publisher().current().blocklist.iter().any(|b| b.cidr.to_string() == "192.0.2.0/24"));
    let r = api.send(
        Method::POST,
        "/v1/blocks",
        &json!({"first": "+15552000000", "last": "+15552009999", "target": "pbx2"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(api.get(&format!("/v1/blocks/{id}")).json()["target"], "pbx2");
    assert_eq!(api.handle.publisher().current().config.did_ranges.len(), 1);
    assert_eq!(api.call(Method::DELETE, &format!("/v1/blocks/{id}"), None, Some(&api.token)).status, 204);
    assert_eq!(api.call(Method::DELETE, "/v1/blocklist/192.0.2.0%2F24", None, Some(&api.token)).status, 204);
    assert_eq!(
        api.call(Method::DELETE, "/v1/targets/pbx1", None, Some(&api.token)).status,
        409,
        "pbx1 is in use"
    );
    assert_eq!(api.call(Method::DELETE, "/v1/targets/pbx2", None, Some(&api.token)).status, 204);
    let metrics = api.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("sipedge_policy_version"));
}

#[test]
fn export_then_import_with_dry_run() {
    let api = start();
    let exported = api.get("/v1/export");
    assert_eq!(exported.status, 200);
    let mut config = Config::from_toml(&exported.body).unwrap();
    config.dids[0].target = "pbx2".into();
    let text = toml::to_string(&config).unwrap();
    let v = api.version();
    let r = api.call(Method::POST, "/v1/import?dry_run=true", Some(&text), Some(&api.token));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.json()["applied"].as_bool(), r.json()["diff"]["changed"].as_u64()), (Some(false), Some(1)));
    assert_eq!(api.version(), v);
    let r = api.call(Method::POST, "/v1/import", Some(&text), Some(&api.token));
    assert_eq!(r.json()["applied"], true);
    assert_eq!(api.get("/v1/dids/%2B15551230000").json()["target"], "pbx2");
    let bad = text.replace("cps = 100", "cps = 0");
    assert_eq!(api.call(Method::POST, "/v1/import", Some(&bad), Some(&api.token)).fields(), ["trunk[0].cps"]);
}

/// The OpenAPI document lists exactly the router's paths, and for each documented path the live
/// router serves exactly the documented methods (others get 405).
#[test]
fn openapi_matches_the_routes() {
    let api = start();
    let doc = api.get("/openapi.json").json();
    let documented: std::collections::BTreeSet<String> =
        doc["paths"].as_object().unwrap().keys().filter(|p| *p != "/healthz").cloned().collect();
    let routed: std::collections::BTreeSet<String> =
        routes().into_iter().map(|(p, _)| p.to_owned()).collect();
    assert_eq!(documented, routed);
    for path in &documented {
        let methods = doc["paths"][path].as_object().unwrap();
        for m in ["get", "post", "put", "delete", "patch"] {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            let r = api.call(method.clone(), &concrete(path), body_for(&method), Some(&api.token));
            assert_eq!(r.status == 405, !methods.contains_key(m), "{m} {path}: {} {}", r.status, r.body);
            assert_ne!(
                (r.status, r.body.is_empty()),
                (404, true),
                "{m} {path}: the router has no such route"
            );
        }
    }
}

/// Commit → visible snapshot, over the API, for single changes. Prints the figures (no timing
/// assertion: this is a measurement).
#[test]
fn publish_latency_of_api_changes() {
    const CHANGES: u32 = 200;
    let api = start();
    let publisher = api.handle.publisher();
    let mut events = publisher.subscribe();
    let mut worst = Duration::ZERO;
    let started = Instant::now();
    for i in 0..CHANGES {
        let sent = Instant::now();
        let r = api.send(Method::PUT, &format!("/v1/dids/%2B1555777{i:04}"), &json!({"target": "pbx1"}));
        assert_eq!(r.status, 200, "{}", r.body);
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            match events.try_recv() {
                Ok(e) if e.change.did_target() == Some((&format!("+1555777{i:04}"), Some("pbx1"))) => {
                    assert_eq!(publisher.current().version, e.version);
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    assert!(Instant::now() < deadline, "no event for change {i}");
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        worst = worst.max(sent.elapsed());
    }
    let mean = started.elapsed() / CHANGES;
    eprintln!(
        "publish latency over the API (request sent → snapshot visible): mean {mean:?}, worst {worst:?} over {CHANGES} changes"
    );
}

/// The issue's scale: a bulk import of 1,000,000 DIDs over the API (streamed CSV, one
/// transaction), the full reload the data plane does after it, then 1,000 single changes with
/// their commit → visible latency while the million DIDs are stored. A measurement (prints
/// figures, asserts only correctness): `cargo test -p control --release -- --ignored --nocapture
/// million`.
#[test]
#[ignore = "measurement at scale (about a minute); run with --ignored --nocapture"]
fn million_dids_then_a_thousand_changes() {
    const ROWS: u64 = 1_000_000;
    const CHANGES: u32 = 1_000;
    let api = start();
    let mut csv = String::with_capacity(40 * ROWS as usize);
    csv.push_str("number,target,customer\n");
    for i in 0..ROWS {
        csv.push_str(&format!("+3120{i:07},pbx{},c{}\n", 1 + i % 2, i % 100));
    }
    let t = Instant::now();
    let r = api.call(Method::POST, "/v1/dids/import", Some(&csv), Some(&api.token));
    let import = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["created"].as_u64(), Some(ROWS));
    let t = Instant::now();
    let (version, routed) = api.handle.publisher().routed_pairs();
    let reload = t.elapsed();
    assert_eq!(routed.len() as u64, ROWS + 1);
    assert_eq!(version, api.version());

    let publisher = api.handle.publisher();
    let mut events = publisher.subscribe();
    let mut latencies = Vec::with_capacity(CHANGES as usize);
    for i in 0..CHANGES {
        let number = format!("+3120{:07}", u64::from(i) * 997 % ROWS);
        let sent = Instant::now();
        let r = if i % 2 == 0 {
            api.send(
                Method::PUT,
                &format!("/v1/dids/{}", number.replace('+', "%2B")),
                &json!({"target": "pbx2"}),
            )
        } else {
            api.call(
                Method::DELETE,
                &format!("/v1/dids/{}", number.replace('+', "%2B")),
                None,
                Some(&api.token),
            )
        };
        assert!(r.status == 200 || r.status == 204 || r.status == 404, "{} {}", r.status, r.body);
        if r.status == 404 {
            continue;
        }
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            match events.try_recv() {
                Ok(e) if matches!(&e.change, PolicyChange::Did { number: n, .. } if *n == number) => break,
                Ok(_) => {}
                Err(_) => {
                    assert!(Instant::now() < deadline, "no event for {number}");
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    eprintln!(
        "1M DIDs: import {import:?} ({:.0} rows/s), full reload {reload:?}; {} single changes over the API \
         (request sent → snapshot visible): p50 {:?}, p99 {:?}, max {:?}",
        ROWS as f64 / import.as_secs_f64(),
        latencies.len(),
        pct(50),
        pct(99),
        pct(100)
    );
}
