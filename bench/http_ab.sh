#!/usr/bin/env bash
# A/B comparison of durable ES256 signing over HTTP between two keyctl builds,
# for a shared, noisy machine: both servers run at once (the idle one costs
# nothing) and short wrk runs alternate A, B, B, A, A, B, ... so both see the
# same background load. Prints every run, then the medians and B/A ratios of
# req/s and of server CPU per request.
#
# Usage: bench/http_ab.sh BUILD_DIR_A BUILD_DIR_B
# Env: AB_PAIRS (default 8), AB_SECONDS per run (default 6), AB_CONNS (default 64).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
A=${1:?usage: http_ab.sh BUILD_DIR_A BUILD_DIR_B}/bin/keyctl
B=${2:?usage: http_ab.sh BUILD_DIR_A BUILD_DIR_B}/bin/keyctl
PAIRS=${AB_PAIRS:-8}
SECS=${AB_SECONDS:-6}
CONNS=${AB_CONNS:-64}
command -v wrk >/dev/null || { echo "error: wrk not installed (scripts/install-deps.sh)" >&2; exit 1; }
for k in "$A" "$B"; do [[ -x "$k" ]] || { echo "error: $k not built" >&2; exit 1; }; done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=../scripts/keyctl-server.sh
source "$ROOT/scripts/keyctl-server.sh"
declare -A URLS TOKENS SPIDS
for side in A B; do
  keyctl=${!side}
  KEYCTL_LOG_LEVEL=warn start_keyctl_server "$keyctl" "$WORK/$side" "$WORK/$side-serve" || exit 1
  PIDS+=("$SERVER_PID")
  URLS[$side]=$URL
  SPIDS[$side]=$SERVER_PID
  TOKENS[$side]=$(cat "$WORK/$side/bootstrap-admin.token")
  "$keyctl" --url "$URL" --token "${TOKENS[$side]}" policy create --tenant-id bench-tenant --algorithm ES256 >/dev/null
done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run() {  # side -> "side req/s p99 cpu_us_per_req"
  local side=$1 t0 t1 n
  t0=$(ticks "${SPIDS[$side]}")
  KEYCTL_TOKEN=${TOKENS[$side]} BENCH_TENANT=bench-tenant \
    wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$ROOT/bench/sign.lua" "${URLS[$side]}" >"$WORK/wrk.txt" 2>&1 || true
  t1=$(ticks "${SPIDS[$side]}")
  n=$(awk '/requests in/ { print $1 }' "$WORK/wrk.txt")
  echo "$side $(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$WORK/wrk.txt") \
$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.txt") \
$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="${n:-0}" 'BEGIN { if (n > 0) printf "%.0f", t * 1e6 / hz / n; else print 0 }')"
}

echo "side req/s p99 cpu_us/req   (A=$A, B=$B, ${CONNS} connections, ${SECS}s runs)"
for i in $(seq 1 "$PAIRS"); do
  if (( i % 2 )); then run A; run B; else run B; run A; fi
done | tee "$WORK/runs.txt"
awk '
  function median(arr, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
  }
  $1 == "A" { ra[++na] = $2; ca[na] = $4 }
  $1 == "B" { rb[++nb] = $2; cb[nb] = $4 }
  END {
    mra = median(ra, na); mrb = median(rb, nb); mca = median(ca, na); mcb = median(cb, nb)
    printf "median req/s A %.0f  B %.0f  B/A %.2f\n", mra, mrb, mrb / mra
    printf "median server CPU per request A %.0fus  B %.0fus  B/A %.2f\n", mca, mcb, mcb / mca
  }' "$WORK/runs.txt"
