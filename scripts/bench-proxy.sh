#!/usr/bin/env bash
# sipedge vs Kamailio, side by side on this machine (issue 4, "Benchmark, side by side with
# Kamailio"). The same SIPp scenario (INVITE/100/180/200/ACK/pause/BYE/200 through a
# record-routing proxy, bench/sipp/uac-did.xml and uas-rr.xml), the same 10,000 DIDs spread over
# the same SIPp PBXs, both proxies with 2 workers on 127.0.0.1. For each proxy:
#   1. memory per active dialog: PSS (summed over the proxy's processes) idle, then with
#      HOLD_RATE calls/s held HOLD_MS each (about HOLD_RATE * HOLD_MS / 1000 dialogs open);
#   2. call-rate steps (RATES), STEP_SECS each, split over PAIRS SIPp callers; stops after the
#      first step that fails (>= 0.1 % failed calls, or < 95 % of the rate carried). Per step:
#      failed calls, INVITE->200 p50/p99 (SIPp -trace_rtt), proxy CPU seconds per 1,000 calls
#      (utime+stime of all its processes from /proc), the load generators' CPU, the machine's
#      idle share and the kernel's UDP receive-buffer drops.
# Writes the markdown tables to stdout and to bench/results/proxy-DATE/table.md (gitignored).
# Loopback only; every process it starts is killed by PID on exit; the whole run is bounded.
#
# Usage: scripts/bench-proxy.sh        (needs sipp and kamailio: SIPEDGE_BENCH=1 scripts/setup.sh)
# Tunables (environment): BENCH_RATES, BENCH_STEP_SECS, BENCH_PAIRS, BENCH_PROXIES,
# BENCH_HOLD_RATE, BENCH_HOLD_MS, BENCH_MAX_SECS, BENCH_PORT_BASE, BENCH_NO_BUILD=1,
# BENCH_SIPEDGE_EDGE (extra lines for sipedge's [edge] section; default none).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# ---- parameters (units in the names) -------------------------------------------------------
RATES=(${BENCH_RATES:-500 1000 2000 3000 4000 6000 8000}) # offered calls/s, ascending
STEP_SECS=${BENCH_STEP_SECS:-10}        # seconds of calls per step
PAIRS=${BENCH_PAIRS:-2}                 # SIPp callers, and as many SIPp PBXs
PROXIES=(${BENCH_PROXIES:-sipedge kamailio})
HOLD_RATE=${BENCH_HOLD_RATE:-500}       # calls/s while measuring memory per dialog
HOLD_MS=${BENCH_HOLD_MS:-5000}          # how long each of those calls stays up, ms
MAX_SECS=${BENCH_MAX_SECS:-900}         # the whole run stops starting steps after this
PORT_BASE=${BENCH_PORT_BASE:-35060}     # proxy: +0; callers: +10+i; PBXs: +30+i
DID_COUNT=10000                         # DIDs configured in both proxies
DID_PREFIX="+1555200"                   # DIDs are DID_PREFIX + 0000..9999
FAIL_LIMIT_PPM=1000                     # a step passes with fewer failed calls than 0.1 %
ACHIEVED_MIN_PCT=95                     # ... and at least 95 % of the offered rate carried
STEP_GRACE_SECS=20                      # a step's SIPp callers are killed after STEP_SECS + this
START_TIMEOUT_SECS=20                   # proxy start-up
KAMAILIO_SHM_MB=512                     # Kamailio shared memory (-m); pkg memory per process:
KAMAILIO_PKG_MB=16                      # (-M); Debian's defaults are 64 and 8
CLK_TCK=$(getconf CLK_TCK)

for tool in sipp kamailio ss awk; do
  command -v "$tool" >/dev/null || { echo "bench-proxy: $tool missing (SIPEDGE_BENCH=1 scripts/setup.sh)" >&2; exit 1; }
done
((${#RATES[@]})) || { echo "bench-proxy: BENCH_RATES is empty" >&2; exit 1; }
for r in "${RATES[@]}"; do
  ((r % PAIRS == 0)) || { echo "bench-proxy: rate $r is not a multiple of $PAIRS pairs" >&2; exit 1; }
done

run_start=$(date +%s)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
SIPEDGE_EDGE_EXTRA=${BENCH_SIPEDGE_EDGE:-}  # extra [edge] lines for sipedge, e.g. "max_transactions = 1048576"
out="$root/bench/results/proxy-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
log() { echo "bench-proxy: $*" >&2; }

# ---- process bookkeeping: everything started is killed by PID ------------------------------
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The process and its descendants (Kamailio forks its workers; sipedge has threads only).
tree() {
  local p=$1 c
  [[ -d /proc/$p ]] || return 0
  echo "$p"
  for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree "$c"; done
}
# CPU ticks (utime + stime) of a process tree.
cpu_ticks() {
  local sum=0 p f
  for p in $(tree "$1"); do
    f=$(cat /proc/"$p"/stat 2>/dev/null) || continue
    f=${f##*) }                       # fields from 3 on (the name may hold spaces)
    read -r -a a <<<"$f"
    sum=$((sum + a[11] + a[12]))      # fields 14 and 15
  done
  echo "$sum"
}
# Proportional set size of a process tree in KiB (shared memory counted once overall).
pss_kb() {
  local sum=0 p v
  for p in $(tree "$1"); do
    v=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null) || continue
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
# Idle and total jiffies of the whole machine.
machine_jiffies() { awk '/^cpu / {t=0; for (i=2; i<=NF; i++) t+=$i; print $5+$6, t}' /proc/stat; }
# UDP datagrams the kernel dropped for full receive buffers (whole machine; all of it is ours
# or idle on loopback).
udp_drops() { awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp; }
# Of those, the ones of the proxy's own sockets (every UDP socket bound to its port).
proxy_drops() { awk -v port="$(printf '%04X' "$proxy_port")" 'NR > 1 { split($2, a, ":"); if (a[2] == port) d += $NF } END { print d + 0 }' /proc/net/udp; }
# Cumulative CPU seconds of this shell's waited-for children (the SIPp callers).
# `times` must run in this shell (a command substitution's subshell has no children of ours), so
# it writes to a file that children_cpu then reads.
times_to() { times >"$1"; }
children_cpu() { awk 'NR==2 {split($1,u,/[ms]/); split($2,s,/[ms]/); printf "%.2f", u[1]*60+u[2]+s[1]*60+s[2]}' "$1"; }

wait_udp_listen() { # port, pid
  local i
  for ((i = 0; i < START_TIMEOUT_SECS * 10; i++)); do
    ss -Hlun "sport = :$1" | grep -q . && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ---- inputs: DIDs, PBX ports, both configurations ------------------------------------------
proxy_port=$PORT_BASE
pbx_port() { echo $((PORT_BASE + 30 + $1)); }
uac_port() { echo $((PORT_BASE + 10 + $1)); }

{ echo SEQUENTIAL; for ((i = 0; i < DID_COUNT; i++)); do printf '%s%04d\n' "$DID_PREFIX" "$i"; done; } >"$out/dids.csv"

{
  cat <<EOF
[edge]
listen = ["udp:127.0.0.1:$proxy_port"]
workers = 2
io = "uring"
$SIPEDGE_EDGE_EXTRA

[control]
db = "$out/sipedge.db"

[health]
# The SIPp PBXs cannot answer OPTIONS probes (Kamailio's configuration does not probe either).
enabled = false

[[trunk]]
name = "carrier"
sources = ["127.0.0.1/32"]
cps = 1000000
max_calls = 10000000
EOF
  for ((k = 0; k < PAIRS; k++)); do printf '\n[[target]]\nname = "pbx%d"\nuris = ["sip:127.0.0.1:%d"]\n' "$k" "$(pbx_port "$k")"; done
  for ((i = 0; i < DID_COUNT; i++)); do
    printf '\n[[did]]\nnumber = "%s%04d"\ntarget = "pbx%d"\n' "$DID_PREFIX" "$i" $((i % PAIRS))
  done
} >"$out/sipedge.toml"

# Kamailio: the same DIDs, in db_text's table format, loaded into the htable at start.
mkdir -p "$out/kamailio-db"
{
  echo "key_name(str) key_type(int) value_type(int) key_value(str) expires(int)"
  for ((i = 0; i < DID_COUNT; i++)); do
    printf '%s%04d:0:0:sip\\:127.0.0.1\\:%d:0\n' "$DID_PREFIX" "$i" "$(pbx_port $((i % PAIRS)))"
  done
} >"$out/kamailio-db/dids"
printf 'table_name(str) table_version(int)\ndids:1\n' >"$out/kamailio-db/version"

# ---- build ----------------------------------------------------------------------------------
if [[ " ${PROXIES[*]} " != *" sipedge "* ]]; then
  : # Kamailio only
elif [[ ${BENCH_NO_BUILD:-} != 1 ]]; then
  log "cargo build --release -p edge"
  cargo build --release -p edge >&2
fi
sipedge_bin="${CARGO_TARGET_DIR:-$root/target}/release/sipedge"
[[ " ${PROXIES[*]} " != *" sipedge "* || -x $sipedge_bin ]] || { echo "bench-proxy: $sipedge_bin not built" >&2; exit 1; }

# ---- one proxy -------------------------------------------------------------------------------
proxy_pid=""
start_proxy() { # name
  local dir="$out/$1"
  mkdir -p "$dir"
  case $1 in
    sipedge)
      (cd "$dir" && RUST_LOG=warn exec "$sipedge_bin" run --config "$out/sipedge.toml") >"$dir/stdout" 2>"$dir/stderr" &
      ;;
    kamailio)
      kamailio -f "$root/bench/kamailio/kamailio.cfg" -DD -E -m "$KAMAILIO_SHM_MB" -M "$KAMAILIO_PKG_MB" \
        -Y "$dir" -P "$dir/kamailio.pid" \
        -l "udp:127.0.0.1:$proxy_port" -A "DIDDB=\"text://$out/kamailio-db\"" \
        >"$dir/stdout" 2>"$dir/stderr" &
      ;;
  esac
  proxy_pid=$!
  pids+=("$proxy_pid")
  wait_udp_listen "$proxy_port" "$proxy_pid" || { log "$1 did not start:"; tail -20 "$dir/stderr" >&2; exit 1; }
  sleep 1 # workers up, tables loaded
}
stop_proxy() {
  kill "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true
}

pbx_pids=()
start_pbxs() { # dir
  local k
  pbx_pids=()
  for ((k = 0; k < PAIRS; k++)); do
    mkdir -p "$1/pbx$k"
    (cd "$1/pbx$k" && exec sipp -sf "$root/bench/sipp/uas-rr.xml" -i 127.0.0.1 -p "$(pbx_port "$k")" -nostdin \
      -trace_err) >/dev/null 2>&1 &
    pbx_pids+=($!)
    pids+=($!)
  done
  for ((k = 0; k < PAIRS; k++)); do wait_udp_listen "$(pbx_port "$k")" "${pbx_pids[$k]}" || { log "PBX $k did not start"; exit 1; }; done
}
stop_pbxs() {
  local p
  for p in "${pbx_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

# Runs PAIRS callers for `calls` calls each at `rate` calls/s each, holding each call `hold_ms`.
# Blocks until they exit (bounded by SIPp's -timeout). Sets caller_pids.
caller_pids=()
start_callers() { # dir rate_each calls_each hold_ms
  local k
  caller_pids=()
  for ((k = 0; k < PAIRS; k++)); do
    mkdir -p "$1/uac$k"
    (cd "$1/uac$k" && exec sipp "127.0.0.1:$proxy_port" -sf "$root/bench/sipp/uac-did.xml" \
      -inf "$out/dids.csv" -i 127.0.0.1 -p "$(uac_port "$k")" -r "$2" -m "$3" -d "$4" \
      -timeout "$((STEP_SECS + HOLD_MS / 1000 + STEP_GRACE_SECS))s" -timeout_error -nostdin \
      -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 -trace_err) >/dev/null 2>&1 &
    caller_pids+=($!)
    pids+=($!)
  done
}
wait_callers() {
  local p
  for p in "${caller_pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
# Sum of a cumulative column over the callers' last stat lines.
stat_sum() { # dir column
  local f sum=0 v
  for f in "$1"/uac*/stat.csv; do
    v=$(awk -F';' -v col="$2" 'NR==1 {for (i=1; i<=NF; i++) if ($i==col) c=i} END {print (c ? $c : 0)+0}' "$f" 2>/dev/null || echo 0)
    sum=$((sum + v))
  done
  echo "$sum"
}
# INVITE->200 percentile over all callers' rtt files, ms.
rtt_pct() { # dir percent
  cat "$1"/uac*/*_rtt.csv 2>/dev/null | awk -F';' '$3 == 1 {print $2}' | sort -g |
    awk -v p="$2" '{v[NR]=$1} END {if (NR==0) {print "-"; exit} i=int((NR*p+99)/100); if (i<1) i=1; printf "%.2f", v[i]}'
}

# ---- measurements ----------------------------------------------------------------------------
results="$out/steps.tsv"    # proxy rate carried calls failed p50 p99 cpu_per_1k cores sipp_cpu_s idle_pct drops proxy_drops pass
memory="$out/memory.tsv"    # proxy idle_kb held_kb dialogs kb_per_dialog
: >"$results"
: >"$memory"

measure_memory() { # proxy
  local dir="$out/$1/hold" idle held dialogs per
  mkdir -p "$dir"
  idle=$(pss_kb "$proxy_pid")
  local calls=$((HOLD_RATE / PAIRS * (HOLD_MS / 1000 + 3)))
  start_callers "$dir" $((HOLD_RATE / PAIRS)) "$calls" "$HOLD_MS"
  sleep $((HOLD_MS / 1000 + 2)) # steady state: every call started HOLD_MS ago or later is up
  held=$(pss_kb "$proxy_pid")
  wait_callers
  dialogs=$((HOLD_RATE * HOLD_MS / 1000))
  per=$(awk -v a="$idle" -v b="$held" -v d="$dialogs" 'BEGIN {printf "%.2f", (b - a) / d}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$idle" "$held" "$dialogs" "$per" \
    "$(stat_sum "$dir" 'FailedCall(C)')" >>"$memory"
  log "$1 memory: idle ${idle} KiB, ${held} KiB with ~${dialogs} dialogs: ${per} KiB/dialog"
  sleep 6 # transactions of the hold phase expire (Kamailio's wait timer is 5 s)
}

run_step() { # proxy rate -> returns 0 when the step passed
  local name=$1 rate=$2 dir="$out/$1/r$2"
  local each=$((rate / PAIRS)) calls_each=$((rate / PAIRS * STEP_SECS))
  local total=$((calls_each * PAIRS))
  mkdir -p "$dir"
  local c0 g0 j0 t0 c1 g1 j1 t1
  c0=$(cpu_ticks "$proxy_pid"); times_to "$dir/times0"; g0=$(children_cpu "$dir/times0")
  read -r i0 j0 < <(machine_jiffies); t0=$(date +%s.%N)
  local u0=0 u1=0 p d0 d1
  d0=$(udp_drops); local q0 q1; q0=$(proxy_drops)
  for p in "${pbx_pids[@]}"; do u0=$((u0 + $(cpu_ticks "$p"))); done
  start_callers "$dir" "$each" "$calls_each" 0
  wait_callers
  t1=$(date +%s.%N); c1=$(cpu_ticks "$proxy_pid"); times_to "$dir/times1"; g1=$(children_cpu "$dir/times1")
  read -r i1 j1 < <(machine_jiffies)
  for p in "${pbx_pids[@]}"; do u1=$((u1 + $(cpu_ticks "$p"))); done
  d1=$(udp_drops); q1=$(proxy_drops)
  local ok failed
  ok=$(stat_sum "$dir" 'SuccessfulCall(C)')
  failed=$((total - ok))
  local p50 p99
  p50=$(rtt_pct "$dir" 50); p99=$(rtt_pct "$dir" 99)
  local line
  line=$(awk -v n="$name" -v r="$rate" -v tot="$total" -v ok="$ok" -v f="$failed" -v p50="$p50" -v p99="$p99" \
    -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" -v g="$(awk -v a="$g0" -v b="$g1" 'BEGIN {print b - a}')" \
    -v u="$((u1 - u0))" -v di="$((i1 - i0))" -v dj="$((j1 - j0))" -v lim="$FAIL_LIMIT_PPM" -v amin="$ACHIEVED_MIN_PCT" -v secs="$STEP_SECS" -v drops="$((d1 - d0))" -v pdrops="$((q1 - q0))" '
    BEGIN {
      wall = t1 - t0; cpu = c / hz
      achieved = ok / (wall > secs ? wall : secs)
      pass = (f * 1000000 < lim * tot) && (achieved * 100 >= amin * r) ? "pass" : "FAIL"
      printf "%s\t%d\t%.0f\t%d\t%d\t%s\t%s\t%.3f\t%.2f\t%.2f\t%.0f\t%d\t%d\t%s\n", n, r, achieved, tot, f, p50, p99,
        (ok ? cpu * 1000 / ok : 0), cpu / wall, g + u / hz, (dj ? 100 * di / dj : 0), drops, pdrops, pass
    }')
  echo "$line" >>"$results"
  log "$(echo "$line" | tr '\t' ' ')"
  [[ $line == *pass ]]
}

for name in "${PROXIES[@]}"; do
  log "== $name"
  start_pbxs "$out/$name"
  start_proxy "$name"
  measure_memory "$name"
  for rate in "${RATES[@]}"; do
    if (($(date +%s) - run_start > MAX_SECS)); then log "time budget (${MAX_SECS}s) spent: no further steps"; break; fi
    run_step "$name" "$rate" || break
    sleep 6 # let the previous step's transactions expire before the next
  done
  stop_proxy
  stop_pbxs
done

# ---- report ------------------------------------------------------------------------------------
{
  echo "### Run $(date -u +%Y-%m-%dT%H:%MZ): $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r), load average at the start: $load_at_start"
  echo
  [[ -n $SIPEDGE_EDGE_EXTRA ]] && echo "sipedge [edge] additions: \`$SIPEDGE_EDGE_EXTRA\`" && echo
  echo "Steps: ${STEP_SECS} s each, ${PAIRS} SIPp caller/PBX pairs, ${DID_COUNT} DIDs, pause 0 ms; stop after the first failing step."
  echo
  echo "| proxy | offered calls/s | carried calls/s | calls | failed | INVITE→200 p50 ms | p99 ms | proxy CPU s / 1,000 calls | proxy cores | SIPp CPU s | machine idle % | UDP drops (all / proxy's) | step |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |\n", $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14}' "$results"
  echo
  echo "Memory (PSS of all the proxy's processes), ${HOLD_RATE} calls/s held ${HOLD_MS} ms:"
  echo
  echo "| proxy | idle KiB | with dialogs KiB | dialogs | KiB per dialog | failed calls |"
  echo "|---|---|---|---|---|---|"
  awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1,$2,$3,$4,$5,$6}' "$memory"
  echo
  echo "Summary (sipedge / Kamailio):"
  echo
  awk -F'\t' -v mem="$memory" '
    BEGIN { while ((getline l < mem) > 0) { split(l, m, "\t"); kb[m[1]] = m[5] } }
    $14 == "pass" { if ($2 > best[$1]) best[$1] = $2; cpu[$1, $2] = $8; p50[$1, $2] = $6; p99[$1, $2] = $7 }
    END {
      s = "sipedge"; k = "kamailio"
      printf "| figure | sipedge | Kamailio | ratio |\n|---|---|---|---|\n"
      printf "| highest calls/s with < 0.1 %% failed | %d | %d | %s |\n", best[s], best[k], (best[k] ? sprintf("%.2f", best[s] / best[k]) : "-")
      common = (best[s] < best[k]) ? best[s] : best[k]
      if (common > 0) {
        printf "| proxy CPU s / 1,000 calls at %d calls/s | %s | %s | %.2f |\n", common, cpu[s, common], cpu[k, common], cpu[s, common] / cpu[k, common]
        printf "| INVITE→200 p50 ms at %d calls/s | %s | %s | - |\n", common, p50[s, common], p50[k, common]
        printf "| INVITE→200 p99 ms at %d calls/s | %s | %s | - |\n", common, p99[s, common], p99[k, common]
      }
      if (kb[s] != "" && kb[k] != "" && kb[k] > 0) printf "| KiB per active dialog | %s | %s | %.2f |\n", kb[s], kb[k], kb[s] / kb[k]
    }' "$results"
} | tee "$out/table.md"
log "results in $out"
