//! Runs `sipedge did check` the way an operator does: a configuration file, a bulk CSV, numbers.

use std::path::PathBuf;
use std::process::{Command, Output};

const CONFIG: &str = r#"
[[trunk]]
name = "us"
sources = ["192.0.2.0/24"]
emergency_target = "psap"
[[trunk]]
name = "uk"
sources = ["198.51.100.0/24"]
country_code = "44"
national_prefix = "0"
international_prefix = "00"
[[target]]
name = "pbx1"
uris = ["sip:10.0.0.10:5060", "sip:10.0.0.11:5060"]
[[target]]
name = "psap"
uris = ["sip:10.0.9.11"]
[[did]]
number = "+15551230000"
target = "pbx1"
max_calls = 10
customer = "acme"
[[did_range]]
prefix = "+1555124"
target = "pbx1"
max_calls = 5
customer = "acme"
tag = "block"
"#;

const CSV: &str = "number,target,customer,group,tag\n\
    +442079460000,pbx1,bbc,london,news\n\
    not-a-number,pbx1\n\
    +15551240001,psap\n";

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn setup(name: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("sipedge-did-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    std::fs::write(dir.join("sipedge.toml"), CONFIG).expect("write the configuration");
    std::fs::write(dir.join("dids.csv"), CSV).expect("write the CSV");
    Dir(dir)
}

fn sipedge(dir: &Dir, args: &[&str]) -> Output {
    let config = dir.0.join("sipedge.toml");
    Command::new(env!("CARGO_BIN_EXE_sipedge"))
        .current_dir(&dir.0)
        .args(["did", "check", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("run sipedge")
}

#[test]
fn prints_route_decisions() {
    let dir = setup("decisions");
    let out = sipedge(
        &dir,
        &["1 (555) 123-0000", "5551240077", "911", "411", "alice", "tel:5551230000;phone-context=+1"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "1 (555) 123-0000: +15551230000 exact -> pbx1 [sip:10.0.0.10:5060, sip:10.0.0.11:5060] max_calls=10 customer=\"acme\"",
            "5551240077: +15551240077 prefix of 7 digits -> pbx1 [sip:10.0.0.10:5060, sip:10.0.0.11:5060] max_calls=5 customer=\"acme\" tag=\"block\"",
            "911: emergency -> psap [sip:10.0.9.11]",
            "411: 484 address incomplete",
            "alice: 404 not a number",
            "tel:5551230000;phone-context=+1: +15551230000 exact -> pbx1 [sip:10.0.0.10:5060, sip:10.0.0.11:5060] max_calls=10 customer=\"acme\"",
        ]
    );
}

#[test]
fn bulk_csv_is_all_or_nothing_unless_told() {
    let dir = setup("csv");
    let out = sipedge(&dir, &["--csv", "dids.csv", "--trunk", "uk", "02079460000"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3: \"not-a-number\" is not an E.164 number"), "{stderr}");
    assert!(out.stdout.is_empty());

    let out = sipedge(&dir, &["--csv", "dids.csv", "--skip-bad-rows", "--trunk", "uk", "02079460000", "999"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped line 3"), "{stderr}");
    assert!(stderr.contains("loaded 2 rows (1 skipped)"), "{stderr}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "02079460000: +442079460000 exact -> pbx1 [sip:10.0.0.10:5060, sip:10.0.0.11:5060] \
         customer=\"bbc\" group=\"london\" tag=\"news\"\n\
         999: 503 emergency number and no emergency target\n"
    );
}

#[test]
fn unknown_trunk_is_an_error() {
    let dir = setup("trunk");
    let out = sipedge(&dir, &["--trunk", "fr", "0123456789"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no trunk named \"fr\""));
}
