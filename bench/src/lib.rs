//! Shared helpers for sipedge's benchmarks: where the benchmark inputs live, and the DID
//! routing fixture.

pub mod did_routing;

use std::path::PathBuf;

/// The directory holding the benchmark messages (`bench/corpus/`), copied from the project's
/// shared corpus so that users benchmark on the same inputs.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}
