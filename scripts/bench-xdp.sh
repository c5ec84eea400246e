#!/usr/bin/env bash
# XDP filter benchmark, one run (needs root): program cost per verdict path through
# BPF_PROG_TEST_RUN against the minimal program, then the veth flood against sipedge XDP (native
# and skb), the minimal XDP program, an nftables drop rule and a user-space socket; then SIPp calls
# from an allow-listed address through `sipedge run` (XDP attached), alone and under the flood.
# Paste the two tables into bench/README.md with the machine and the date.
#   scripts/bench-xdp.sh [--seconds S] [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=5
rounds=5
while (($#)); do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        *) echo "usage: $0 [--seconds S] [--rounds N]" >&2; exit 2 ;;
    esac
done

SIPEDGE_BENCH=1 scripts/setup.sh
cargo build --release -p bench --bin xdp-cost --bin xdp-flood-bench --bin flood
cargo build --release -p edge --bin sipedge
echo "## machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "## program cost: target/release/xdp-cost --rounds $rounds"
target/release/xdp-cost --rounds "$rounds"
echo
echo "## flood: target/release/xdp-flood-bench --seconds $seconds"
target/release/xdp-flood-bench --seconds "$seconds"
