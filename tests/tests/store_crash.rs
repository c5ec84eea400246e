//! Crash safety of the store: `kill -9` of `sipedge run` during a bulk DID import leaves the
//! store at the state before the import; right after a completed import, at the state after it.
//! On restart the API (and the snapshots the data plane loads) serve the committed state.
#![allow(clippy::unwrap_used, reason = "integration test helpers: a failure is a failed test")]

mod control_support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use control_support::{Sipedge, TempDir, agent, free_port, get, write_config};

/// Rows of the bulk import that the kill interrupts (sent half, then killed).
const BULK_ROWS: u32 = 400_000;
/// Time the server gets to insert the half it received before the kill.
const INSERT_TIME: Duration = Duration::from_millis(1_500);

fn csv_rows(first: u32, count: u32) -> String {
    (first..first + count).map(|i| format!("+4930{i:08},pbx1\n")).collect()
}

fn did_count(db: &std::path::Path) -> u64 {
    let store = control::store::Store::open(db).unwrap();
    store.counts().unwrap().dids
}

fn stats_dids(api: SocketAddr, token: &str) -> u64 {
    let (status, body) = get(api, token, "/v1/stats");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["counts"]["dids"].as_u64().unwrap()
}

#[test]
fn kill_9_during_and_after_a_bulk_import() {
    let dir = TempDir::new("crash");
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = write_config(&dir.0, api);
    let db = dir.0.join("store.db");
    let mut server = Sipedge::start(&config, api, &dir.0.join("stdout-1.log"));
    let token = std::fs::read_to_string(dir.0.join("store.db.token")).unwrap().trim().to_owned();

    // The committed "old" state: the seeded DID plus 1,000 imported ones.
    let body = format!("number,target\n{}", csv_rows(0, 1_000));
    let mut resp = agent()
        .post(&format!("http://{api}/v1/dids/import"))
        .header("authorization", &format!("Bearer {token}"))
        .send(body.as_str())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.body_mut().read_to_string().unwrap());
    let old = 1_001;
    assert_eq!(stats_dids(api, &token), old);

    // Stream half of a large import (chunked), let the server insert it, then kill -9 while the
    // body is incomplete: the import's transaction is open and cannot have committed.
    let mut s = TcpStream::connect(api).unwrap();
    write!(
        s,
        "POST /v1/dids/import HTTP/1.1\r\nhost: {api}\r\nauthorization: Bearer {token}\r\ncontent-type: text/csv\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let mut send_chunk = |text: &str| write!(s, "{:x}\r\n{text}\r\n", text.len()).unwrap();
    send_chunk("number,target\n");
    let half = BULK_ROWS / 2;
    for block in (0..half).step_by(10_000) {
        send_chunk(&csv_rows(1_000_000 + block, 10_000));
    }
    std::thread::sleep(INSERT_TIME);
    let wal = std::fs::metadata(dir.0.join("store.db-wal")).map(|m| m.len()).unwrap_or(0);
    eprintln!("WAL at the kill: {wal} bytes (uncommitted pages of the interrupted import)");
    server.kill9();
    drop(s);
    assert_eq!(did_count(&db), old, "after kill -9 mid-import the store is at the old state");

    // Restart: the API serves the committed state; the interrupted rows are absent.
    assert!(server.stdout().contains(&token), "the first start prints the token");
    let mut server = Sipedge::start(&config, api, &dir.0.join("stdout-2.log"));
    assert_eq!(stats_dids(api, &token), old);
    assert_eq!(get(api, &token, "/v1/dids/%2B493001000000").0, 404);

    // A completed import, then kill -9 at once: the store is at the new state.
    let body = format!("number,target\n{}", csv_rows(2_000_000, half));
    let mut resp = agent()
        .post(&format!("http://{api}/v1/dids/import"))
        .header("authorization", &format!("Bearer {token}"))
        .send(body.as_str())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.body_mut().read_to_string().unwrap());
    server.kill9();
    assert!(!server.stdout().contains("sipedge_"), "the token is printed on the first start only");
    let new = old + u64::from(half);
    assert_eq!(did_count(&db), new, "a completed import survives kill -9");
    let mut routed = 0u64;
    control::store::Store::open(&db)
        .unwrap()
        .each_routed_did(|_| {
            routed += 1;
            Ok::<_, control::store::StoreError>(())
        })
        .unwrap();
    assert_eq!(routed, new, "the data plane's full load sees the committed set");
    let server = Sipedge::start(&config, api, &dir.0.join("stdout-3.log"));
    assert_eq!(stats_dids(server.api, &token), new);
}
