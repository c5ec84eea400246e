//! `sipedge sip lint FILE...`: parses each file as one SIP message and says whether it is valid
//! (`FILE: valid` / `FILE: invalid: REASON`), or with `--json` prints its start line and headers.
//! Exit status: 0 when all are valid, 1 when any is invalid, 2 on a usage or I/O error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use edge::sip::{self, HeaderIndexEntry, SipMessage, StartLine};
use serde_json::{Value, json};

/// Header index size for linting: larger than the data plane's, so that a capture with many
/// headers is judged on its grammar rather than on the worker's limit.
const LINT_MAX_HEADERS: usize = 1024;

/// Lints `files`; see the module documentation.
pub(crate) fn run(files: &[PathBuf], json: bool) -> ExitCode {
    let mut index = vec![HeaderIndexEntry::EMPTY; LINT_MAX_HEADERS];
    let mut any_invalid = false;
    let mut io_error = false;
    for file in files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", file.display());
                io_error = true;
                continue;
            }
        };
        let verdict = sip::parse(&bytes, &mut index).and_then(|m| m.validate().map(|()| m));
        any_invalid |= verdict.is_err();
        if json {
            println!("{}", to_json(file, &verdict));
        } else {
            match &verdict {
                Ok(_) => println!("{}: valid", file.display()),
                Err(e) => println!("{}: invalid: {e}", file.display()),
            }
        }
    }
    if io_error {
        ExitCode::from(2)
    } else if any_invalid {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn to_json(file: &Path, verdict: &Result<SipMessage<'_>, sip::ParseError>) -> Value {
    let msg = match verdict {
        Err(e) => {
            return json!({
                "file": file.display().to_string(),
                "valid": false,
                "error": { "kind": e.kind().to_string(), "pos": e.pos(), "reason": e.reason() },
            });
        }
        Ok(m) => m,
    };
    let start = match msg.start_line() {
        StartLine::Request(r) => json!({
            "type": "request",
            "method": r.method.as_str(),
            "uri": text(r.uri_raw),
        }),
        StartLine::Response(s) => json!({
            "type": "response",
            "code": s.code,
            "reason": text(s.reason),
        }),
    };
    let headers: Vec<Value> = msg
        .headers()
        .map(|h| json!({ "name": text(h.name), "kind": h.kind.name(), "value": text(h.value) }))
        .collect();
    json!({
        "file": file.display().to_string(),
        "valid": true,
        "start_line": start,
        "headers": headers,
        "body_bytes": msg.body().len(),
    })
}
