#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, every test, and the checks
# that run the built binary the way users do. Tests that need root or a kernel feature skip
# loudly outside CI; under CI=true they must run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build"
cargo build --workspace --bins
scripts/check-rfc4475.sh target/debug/sipedge
echo "== XDP object: the C source still compiles and passes the verdict table"
scripts/build-xdp.sh --check
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo's own last line is a per-crate summary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
