//! Helpers for sipedge's end-to-end tests: where the shared corpus is, where the built binary
//! is, and how a test that needs a missing feature skips loudly (and fails under `CI=true`).

pub mod netns;
pub mod probe;
pub mod sipp;

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
        .to_path_buf()
}

/// True when running in CI (`CI=true`), where a test must run rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips the current test with a loud message, or panics under `CI=true` where skipping is not
/// allowed. Returns `true` when the caller should return early.
#[must_use]
pub fn skip(test: &str, why: &str) -> bool {
    if in_ci() {
        panic!("{test}: cannot skip under CI=true: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    true
}

/// A folder of the project's shared corpus (`../shared/corpus/<name>` beside the repository),
/// or `None` after a loud skip message when it is absent (a user's clone has no `shared/`).
pub fn shared_corpus(test: &str, name: &str) -> Option<PathBuf> {
    let dir = workspace_root().join("../shared/corpus").join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    let _ = skip(test, &format!("shared corpus {} is absent", dir.display()));
    None
}

/// The `sipedge` binary built by `cargo build` (debug, or release with `SIPEDGE_PROFILE=release`),
/// honouring `CARGO_TARGET_DIR` and an explicit `SIPEDGE_BIN`.
pub fn sipedge_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SIPEDGE_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let profile = std::env::var("SIPEDGE_PROFILE").unwrap_or_else(|_| "debug".into());
    let bin = target.join(profile).join("sipedge");
    assert!(
        bin.is_file(),
        "{} not built: run `cargo build -p edge` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// True when the process runs as root (needed for network namespaces and XDP).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
