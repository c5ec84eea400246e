#!/usr/bin/env bash
# Compiles the XDP programs under ebpf/xdp/ with clang (flags from NOTES.md).
#   scripts/build-xdp.sh          rebuild the committed objects ebpf/xdp/*.o
#   scripts/build-xdp.sh --check  compile into a temporary folder and run the BPF_PROG_TEST_RUN
#                                 verdict table against that fresh object (needs root)
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG=${CLANG:-clang-16}
CFLAGS=(-O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -Wall -Werror)
SRC=ebpf/xdp
PROGRAMS=(sipedge_xdp minimal_drop)

out=$SRC
if [[ "${1:-}" == "--check" ]]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
for p in "${PROGRAMS[@]}"; do
    "$CLANG" "${CFLAGS[@]}" -c "$SRC/$p.c" -o "$out/$p.o"
done
if [[ "$out" != "$SRC" ]]; then
    echo "== clang build of $SRC compiles; running the verdict table against it"
    SIPEDGE_XDP_OBJECT="$out/sipedge_xdp.o" cargo test -p ebpf --test test_run
else
    echo "built: ${PROGRAMS[*]/%/.o} in $SRC"
fi
