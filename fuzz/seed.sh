#!/usr/bin/env bash
# Seeds the fuzz corpus with the RFC 4475 torture messages (from ../shared, never committed)
# and the benchmark messages, then prints the command that runs the fuzzer.
# Usage: fuzz/seed.sh            (from anywhere)
set -euo pipefail
cd "$(dirname "$0")"
dest=corpus/sip_parse
mkdir -p "$dest"
shared=../../shared/corpus/rfc4475
if [[ -d $shared ]]; then
  cp "$shared"/*.dat "$dest"/
else
  echo "seed.sh: $shared is absent; seeding with the benchmark messages only" >&2
fi
cp ../bench/corpus/*.sip "$dest"/
echo "seeded $(ls "$dest" | wc -l) files into fuzz/$dest"
echo "run: cd fuzz && cargo +nightly fuzz run sip_parse -- -max_total_time=600"
