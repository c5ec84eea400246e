//! `sipedge run --check`: a configuration this build cannot serve is refused before anything
//! starts, with the listener named; one it can serve passes.
#![allow(clippy::unwrap_used, reason = "integration test: a failure is a failed test")]

use std::process::{Command, Output};

fn check(listen: &str) -> Output {
    let dir = std::env::temp_dir().join(format!("sipedge-run-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sipedge.toml");
    std::fs::write(&path, format!("[edge]\nlisten = [{listen}]\n")).unwrap();
    let out =
        Command::new(tests::sipedge_bin()).arg("run").arg("--config").arg(&path).arg("--check").output();
    std::fs::remove_dir_all(&dir).unwrap();
    out.unwrap()
}

#[test]
fn unserved_listeners_are_refused_by_name() {
    let out = check(r#""udp:127.0.0.1:5060", "udp:[::1]:5060""#);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    for listener in ["tcp:127.0.0.1:5060", "tls:127.0.0.1:5061"] {
        let out = check(&format!(r#""udp:127.0.0.1:5060", "{listener}""#));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{listener} accepted");
        assert!(
            stderr.contains(&format!("edge.listen[1] = {listener}: TCP and TLS listeners are not served")),
            "{stderr}"
        );
    }
}
