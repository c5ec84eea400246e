//! Calls keep flowing while the control plane changes. SIPp places calls continuously through
//! sipedge while the test applies 1,000 changes through the REST API (DIDs added, moved between
//! PBXs and deleted; the called DID itself moved; blocklist entries and trunk limits changed) and
//! then bulk-imports 1,000,000 DIDs with `sipedge ctl did import`. No call fails, the final
//! routes are the ones the changes made, a deleted DID gets 404 and an imported one routes.
//! Durations are printed, not asserted (timing belongs in benchmarks).

use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tests::probe::{probe, until_status};
use tests::sipedge_bin;
use tests::sipp::{
    CONTROL_WITHOUT_PROBES, Edge, LOOPBACK_EDGE, Scenario, free_udp_port, have_sipp, uac, uas,
};

/// DIDs that each go through add → move → delete (→ re-add for even ones).
const CHANGED_DIDS: u32 = 250;
/// API changes in all: four per changed DID.
const API_CHANGES: u32 = CHANGED_DIDS * 4;
/// DIDs in the bulk import.
const BULK_DIDS: u32 = 1_000_000;
/// The number the continuous calls dial (never deleted; moved between the PBXs).
const CALLED: &str = "+15551230000";
/// Calls per SIPp round of the continuous load, and their rate per second.
const ROUND_CALLS: u32 = 60;
const ROUND_RATE: u32 = 30;
/// Longest wait for a change to show in the data plane, before the test fails.
const CHANGE_DEADLINE: Duration = Duration::from_secs(60);

fn config(pbx: u16, pbx2: u16) -> String {
    format!(
        r#"
{LOOPBACK_EDGE}{CONTROL_WITHOUT_PROBES}[[trunk]]
name = "carrier"
sources = ["127.0.0.1/32"]
cps = 1000
max_calls = 10000
[[target]]
name = "pbx"
uris = ["sip:127.0.0.1:{pbx}"]
[[target]]
name = "pbx2"
uris = ["sip:127.0.0.1:{pbx2}"]
[[did]]
number = "{CALLED}"
target = "pbx"
"#
    )
}

/// Totals of the continuous SIPp rounds.
#[derive(Debug, Default)]
struct Load {
    rounds: u32,
    successful: u64,
    failed: u64,
    bad_exits: u32,
}

/// Runs SIPp rounds against `edge` until `stop` is set; the round running then is finished.
fn continuous_calls(edge: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Load> {
    std::thread::spawn(move || {
        let mut load = Load::default();
        while !stop.load(Ordering::Relaxed) {
            let r = uac(
                Scenario::Builtin("uac"),
                edge,
                "127.0.0.1",
                free_udp_port(),
                CALLED,
                ROUND_CALLS,
                ROUND_RATE,
                &[],
            );
            load.rounds += 1;
            load.successful += r.successful;
            load.failed += r.failed;
            load.bad_exits += u32::from(r.exit != 0);
        }
        load
    })
}

fn changed_did(k: u32) -> String {
    format!("+1555777{k:04}")
}

/// `/v1/dids/{number}` with the `+` escaped.
fn did_path(number: &str) -> String {
    format!("/v1/dids/{}", number.replacen('+', "%2B", 1))
}

/// Applies one API change and checks it was accepted.
fn change(edge: &Edge, method: &str, path: &str, body: Option<&str>) {
    let (status, text) = edge.api(method, path, body);
    assert!(matches!(status, 200 | 201 | 204), "{method} {path}: {status} {text}");
}

/// The 1,000 changes. Returns how long they took.
fn apply_changes(edge: &Edge) -> Duration {
    let start = Instant::now();
    for k in 0..CHANGED_DIDS {
        let path = did_path(&changed_did(k));
        change(edge, "PUT", &path, Some(r#"{"target": "pbx"}"#));
        change(edge, "PUT", &path, Some(r#"{"target": "pbx2"}"#));
        change(edge, "DELETE", &path, None);
        match k % 10 {
            // Even DIDs come back, on the first PBX.
            0 | 2 | 4 | 6 | 8 => change(edge, "PUT", &path, Some(r#"{"target": "pbx"}"#)),
            // The called DID moves while calls to it are in progress: they keep their route.
            1 => {
                let to = if k % 20 == 1 { "pbx2" } else { "pbx" };
                change(edge, "PUT", &did_path(CALLED), Some(&format!(r#"{{"target": "{to}"}}"#)));
            }
            // The trunk's limits move (still far above the load).
            3 => change(
                edge,
                "PUT",
                "/v1/limits/carrier",
                Some(&format!(r#"{{"cps": {}, "max_calls": 10000}}"#, 1000 + k)),
            ),
            // Blocklist entries for addresses that never call, added and lifted.
            5 => change(
                edge,
                "POST",
                "/v1/blocklist",
                Some(&format!(
                    r#"{{"cidr": "198.51.100.{}/32", "reason": "live test", "ttl": 600}}"#,
                    k % 250
                )),
            ),
            7 => change(edge, "DELETE", &format!("/v1/blocklist/198.51.100.{}%2F32", (k - 2) % 250), None),
            _ => change(
                edge,
                "POST",
                "/v1/blocklist",
                Some(&format!(r#"{{"cidr": "203.0.113.{}/32", "reason": "live test", "ttl": 1}}"#, k % 250)),
            ),
        }
    }
    start.elapsed()
}

/// Writes the bulk CSV: `+15558000000` … `+15558999999` to the second PBX.
fn write_bulk_csv(path: &std::path::Path) {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create csv"));
    writeln!(out, "number,target,customer").expect("write csv");
    for i in 0..BULK_DIDS {
        writeln!(out, "+15558{i:06},pbx2,bulk").expect("write csv");
    }
    out.flush().expect("write csv");
}

/// `sipedge ctl did import FILE` against the running edge; returns how long it took.
fn bulk_import(edge: &Edge, csv: &std::path::Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(sipedge_bin())
        .args(["ctl", "--api"])
        .arg(edge.api.expect("API address").to_string())
        .arg("--token")
        .arg(edge.token.as_deref().expect("admin token"))
        .args(["did", "import"])
        .arg(csv)
        .output()
        .expect("run sipedge ctl");
    assert!(
        out.status.success(),
        "ctl did import: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

#[test]
fn calls_do_not_fail_while_a_thousand_changes_and_a_million_did_import_apply() {
    if !have_sipp("calls_do_not_fail_while_a_thousand_changes_and_a_million_did_import_apply") {
        return;
    }
    let (pbx, pbx2) = (free_udp_port(), free_udp_port());
    let edge = Edge::start(&config(pbx, pbx2));
    let _uas = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx);
    let _uas2 = uas(Scenario::Builtin("uas"), "127.0.0.1", pbx2);
    let csv = edge.dir.path().join("bulk.csv");
    write_bulk_csv(&csv);

    let stop = Arc::new(AtomicBool::new(false));
    let load = continuous_calls(edge.addr, Arc::clone(&stop));
    // Calls are flowing before the first change.
    std::thread::sleep(Duration::from_secs(1));

    let took = apply_changes(&edge);
    println!("live under load: {API_CHANGES} API changes applied in {took:?}");
    let imported = bulk_import(&edge, &csv);
    println!("live under load: {BULK_DIDS} DIDs imported through `sipedge ctl did import` in {imported:?}");
    let visible = until_status(edge.addr, "+15558999999", 100, CHANGE_DEADLINE);
    println!("live under load: the imported DIDs routed {visible:?} after the import returned");

    // The final routes are the ones the changes made.
    for k in (0..CHANGED_DIDS).step_by(7) {
        let want = if k % 2 == 0 { 100 } else { 404 };
        assert_eq!(probe(edge.addr, &changed_did(k), 10_000 + k), Some(want), "{}", changed_did(k));
    }
    let r =
        uac(Scenario::Builtin("uac"), edge.addr, "127.0.0.1", free_udp_port(), "+15558123456", 5, 10, &[]);
    assert_eq!((r.exit, r.successful, r.failed), (0, 5, 0), "an imported DID: {r:?}");
    let r = uac(
        Scenario::File("uac-expect-404.xml"),
        edge.addr,
        "127.0.0.1",
        free_udp_port(),
        &changed_did(1),
        2,
        10,
        &[],
    );
    assert_eq!((r.exit, r.successful, r.failed), (0, 2, 0), "a deleted DID: {r:?}");

    stop.store(true, Ordering::Relaxed);
    let load = load.join().expect("the SIPp load thread");
    println!("live under load: continuous calls {load:?}");
    assert!(load.rounds >= 2 && load.successful > 0, "calls ran during the changes: {load:?}");
    assert_eq!((load.failed, load.bad_exits), (0, 0), "no call failed: {load:?}");
}
