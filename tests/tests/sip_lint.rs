//! `sipedge sip lint` as a user runs it: the built binary on files, its output lines, its exit
//! codes (0 all valid, 1 any invalid, 2 I/O error) and its `--json` form.

use std::path::PathBuf;
use std::process::{Command, Output};

const VALID: &[u8] = b"OPTIONS sip:+15551230000@example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\nMax-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=9fxced76sl\r\nTo: <sip:+15551230000@example.com>\r\n\
Call-ID: 3848276298220188511@192.0.2.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

/// A scratch folder for this test process, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sipedge-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        Scratch(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lint(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(tests::sipedge_bin()).arg("sip").arg("lint").args(args).output().expect("run sipedge")
}

#[test]
fn lint_reports_each_file_and_exits_with_the_verdict() {
    let dir = Scratch::new("lint");
    let good = dir.file("good.sip", VALID);
    let bad_bytes = String::from_utf8_lossy(VALID).replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    let bad = dir.file("bad.sip", bad_bytes.as_bytes());

    let out = lint(&[good.as_os_str()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}: valid\n", good.display()));

    let out = lint(&[good.as_os_str(), bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[1].starts_with(&format!("{}: invalid: CSeqMethodMismatch", bad.display())), "{stdout}");

    let missing = dir.0.join("missing.sip");
    let out = lint(&[good.as_os_str(), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let out = Command::new(tests::sipedge_bin()).args(["sip", "lint"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no files is a usage error");
}

#[test]
fn lint_json_prints_start_line_and_headers() {
    let dir = Scratch::new("lint-json");
    let good = dir.file("good.sip", VALID);
    let out = lint(&["--json".as_ref(), good.as_os_str()]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["start_line"]["method"], "OPTIONS");
    assert_eq!(v["start_line"]["uri"], "sip:+15551230000@example.com;user=phone");
    assert_eq!(v["headers"].as_array().unwrap().len(), 7);
    assert_eq!(v["headers"][0]["kind"], "Via");
    assert_eq!(v["headers"][5]["value"], "1 OPTIONS");

    let bad = dir.file("bad.sip", b"SIP/2.0 4294967301 better not break the receiver\r\n\r\n");
    let out = lint(&["--json".as_ref(), bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["valid"].clone(), v["error"]["kind"].clone()), (false.into(), "StatusCode".into()));
}

#[test]
fn lint_scores_the_rfc4475_corpus() {
    let Some(dir) = tests::shared_corpus("lint_scores_the_rfc4475_corpus", "rfc4475") else { return };
    let valid = ["wsinv.dat", "esc01.dat", "semiuri.dat", "unreason.dat"].map(|f| dir.join(f));
    let out = lint(&valid.iter().map(|p| p.as_os_str()).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    for f in ["multi01.dat", "insuf.dat", "bigcode.dat", "badinv01.dat"] {
        let out = lint(&[dir.join(f).as_os_str()]);
        assert_eq!(out.status.code(), Some(1), "{f}");
    }
}
