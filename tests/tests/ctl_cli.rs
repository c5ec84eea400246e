//! `sipedge ctl` against a live `sipedge run`: flags, environment and token file; tables and
//! JSON; the API's field errors; CSV import; export and import with a dry run.
#![allow(clippy::unwrap_used, reason = "integration test helpers: a failure is a failed test")]

mod control_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use control_support::{Sipedge, TempDir, free_port, write_config};

fn ctl(config: &Path, args: &[&str]) -> Output {
    Command::new(tests::sipedge_bin()).arg("ctl").arg("--config").arg(config).args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "status {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ctl_drives_a_live_api() {
    let dir = TempDir::new("ctl");
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = write_config(&dir.0, api);
    let mut server = Sipedge::start(&config, api, &dir.0.join("stdout.log"));
    let token_file = dir.0.join("store.db.token");
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();
    assert!(token.starts_with("sipedge_"), "{token}");

    // Token from the file beside the database (found through --config).
    let stats = ok(&ctl(&config, &["stats"]));
    assert!(stats.contains("policy version") && stats.contains("dids"), "{stats}");

    ok(&ctl(&config, &["did", "add", "+18003569377", "--target", "pbx1", "--customer", "florist"]));
    let table = ok(&ctl(&config, &["did", "search", "--vanity", "1800%FLOWERS"]));
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NUMBER"), "{table}");
    assert!(lines.next().unwrap().contains("+18003569377"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&config, &["--json", "did", "search", "--customer", "florist"])))
            .unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 1);
    assert_eq!(json["items"][0]["target"], "pbx1");

    // The API's field errors, one per line; exit status 1.
    let err = refused(&ctl(&config, &["did", "add", "5551234", "--target", "nowhere"]));
    assert!(err.contains("number:") && err.contains("target: no target named \"nowhere\""), "{err}");

    // Wrong token from the flag; then the right one from the environment with no readable file.
    assert!(refused(&ctl(&config, &["--token", "sipedge_wrong", "stats"])).contains("401"));
    let out = Command::new(tests::sipedge_bin())
        .args(["ctl", "--api", &api.to_string(), "--token-file", "/nonexistent", "stats"])
        .env("SIPEDGE_TOKEN", &token)
        .output()
        .unwrap();
    ok(&out);
    let out = Command::new(tests::sipedge_bin())
        .args(["ctl", "--token-file", "/nonexistent", "stats"])
        .env("SIPEDGE_API", format!("http://{api}"))
        .env_remove("SIPEDGE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token"));

    // A second token, used through the environment, is the actor of its changes.
    let bot = ok(&ctl(&config, &["token", "add", "noc-bot"])).trim().to_owned();
    assert!(bot.starts_with("sipedge_") && bot != token, "{bot}");
    let out = Command::new(tests::sipedge_bin())
        .args(["ctl", "--config"])
        .arg(&config)
        .args(["did", "rm", "+18003569377"])
        .env("SIPEDGE_TOKEN", &bot)
        .output()
        .unwrap();
    ok(&out);
    let audit = ok(&ctl(&config, &["audit", "--object", "did", "--key", "+18003569377"]));
    assert!(audit.lines().last().unwrap().contains("noc-bot"), "{audit}");
    assert!(ok(&ctl(&config, &["token", "list"])).contains("noc-bot"));

    // Bulk import from a file.
    let csv = dir.0.join("dids.csv");
    let mut text = String::from("number,target,customer,group,tag\n");
    for i in 0..10_000 {
        text.push_str(&format!("+4420794{i:05},pbx2,acme,sales,bulk\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let out = ok(&ctl(&config, &["did", "import", csv.to_str().unwrap()]));
    assert!(out.contains("imported 10000 rows (10000 new, 0 updated)"), "{out}");
    let listed = ok(&ctl(&config, &["--json", "did", "list", "--all"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 10_001, "the seeded DID and the imported ones");

    // Blocklist, limits, trunks, audit.
    ok(&ctl(&config, &["block", "add", "192.0.2.7", "--ttl", "600", "--reason", "SIP scanner"]));
    assert!(ok(&ctl(&config, &["block", "list"])).contains("192.0.2.7/32"));
    ok(&ctl(&config, &["limits", "set", "carrier-a", "--cps", "20", "--max-calls", "40"]));
    let trunks = ok(&ctl(&config, &["trunk", "list"]));
    assert!(
        trunks.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>().contains(&"20"),
        "{trunks}"
    );
    let audit = ok(&ctl(&config, &["audit", "--object", "limits"]));
    assert!(audit.contains("admin") && audit.contains("carrier-a"), "{audit}");

    // Export, edit, dry-run import (nothing changes), then apply.
    let exported = dir.0.join("export.toml");
    ok(&ctl(&config, &["export", "-o", exported.to_str().unwrap()]));
    let edited = std::fs::read_to_string(&exported).unwrap().replace("cps = 20", "cps = 30");
    std::fs::write(&exported, edited).unwrap();
    let dry = ok(&ctl(&config, &["import", "--dry-run", exported.to_str().unwrap()]));
    assert!(dry.contains("cps: 20 -> 30") && dry.contains("0 to add, 1 to change, 0 to remove"), "{dry}");
    assert!(ok(&ctl(&config, &["limits", "list"])).contains("20"));
    let applied = ok(&ctl(&config, &["import", exported.to_str().unwrap()]));
    assert!(applied.contains("applied"), "{applied}");
    let limits: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&config, &["--json", "limits", "list"]))).unwrap();
    assert_eq!(limits["items"][0]["cps"], 30);

    server.kill9();
    let printed = server.stdout();
    assert_eq!(printed.matches(&token).count(), 1, "the first start prints the token once: {printed:?}");
}
