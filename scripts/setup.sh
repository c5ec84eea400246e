#!/usr/bin/env bash
# Installs what sipedge's tests and benchmarks need on Debian, idempotently: packages already
# present are left alone, and apt-get runs only when something is missing.
set -euo pipefail

packages=(
  sip-tester      # sipp: real SIP peers for end-to-end tests
  clang-16        # compiles ebpf/xdp/*.c (-target bpf) to check the committed object
  llvm-16         # llvm-objdump/llvm-strip for the BPF object
  libbpf-dev      # bpf_helpers.h, BTF map definitions
  iproute2        # ip netns / veth for the XDP and proxy topologies
  linux-libc-dev  # linux/bpf.h, linux/if_ether.h ...
)
[[ ${SIPEDGE_BENCH:-} == 1 ]] && packages+=(kamailio kamailio-extra-modules nftables valgrind ethtool)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bpffs, for pinned XDP maps (only when root and not mounted yet).
if [[ $(id -u) == 0 ]] && ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf || echo "setup: could not mount bpffs at /sys/fs/bpf"
fi
echo "setup: ok"
