#!/usr/bin/env bash
# End-to-end durable signing over HTTP (ES256, software key, ledger row committed
# before each response) with wrk at 1, 64 and 1000 connections, printed beside
# `openssl speed -multi 2 ecdsap256` measured in the same run. The load
# generator shares the machine's cores with the server, as PERFORMANCE.md states.
# Then the same at 64 connections with the database on PostgreSQL (a throwaway
# local server with its durability defaults, fsync and synchronous_commit on)
# beside the SQLite figure.
#
# Usage: bench/http_bench.sh [BUILD_DIR]
# Env: HTTP_BENCH_SECONDS (default 10), HTTP_BENCH_CONNS (default "1 64 1000"),
#      HTTP_BENCH_HSM=0 to skip the PKCS#11 part (e.g. for before/after runs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${1:-${BUILD_DIR:-$ROOT/build}}
KEYCTL=$BUILD_DIR/bin/keyctl
SECONDS_PER_RUN=${HTTP_BENCH_SECONDS:-10}
log() { echo "[http-bench] $*" >&2; }
command -v wrk >/dev/null || { echo "error: wrk not installed (scripts/install-deps.sh)" >&2; exit 1; }
[[ -x "$KEYCTL" ]] || { echo "error: $KEYCTL not built" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

WORK=$(mktemp -d)
PG_DIR=$(mktemp -d)  # not inside WORK: as root the cluster runs as `postgres`, which cannot enter WORK
SERVER_PID=""
PG_PID=""
stop_server() {
  [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() {
  stop_server
  stop_pg_cluster
  rm -rf "$WORK" "$PG_DIR"
}
trap cleanup EXIT
# shellcheck source=../scripts/pg-cluster.sh
source "$ROOT/scripts/pg-cluster.sh"

# run_wrk CONNS OUT: signs for SECONDS_PER_RUN with wrk against BENCH_TENANT on
# URL; sets rps, p50, p99 and errs from its report.
run_wrk() {
  local conns=$1 out=$2 threads=2
  [[ $conns -lt 2 ]] && threads=1
  log "wrk -t$threads -c$conns -d${SECONDS_PER_RUN}s ($BENCH_TENANT)"
  wrk -t"$threads" -c"$conns" -d"${SECONDS_PER_RUN}s" --latency -s "$ROOT/bench/sign.lua" "$URL" >"$out" 2>&1 || true
  rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  p50=$(awk '$1 == "50%" { print $2 }' "$out")
  p99=$(awk '$1 == "99%" { print $2 }' "$out")
  errs=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
}
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

log "openssl speed -multi $(nproc) ecdsap256 (baseline, ${SECONDS_PER_RUN}s)"
BASE=$(openssl speed -mr -multi "$(nproc)" -seconds "$SECONDS_PER_RUN" ecdsap256 2>/dev/null |
  awk -F: '$1 == "+F4" && $3 == 256 { printf "%.0f", $4 }')

# shellcheck source=../scripts/keyctl-server.sh
source "$ROOT/scripts/keyctl-server.sh"
KEYCTL_LOG_LEVEL=warn start_keyctl_server "$KEYCTL" "$WORK/data" "$WORK/serve" || exit 1
export KEYCTL_URL=$URL KEYCTL_TOKEN=$(cat "$WORK/data/bootstrap-admin.token") BENCH_TENANT=bench-tenant
"$KEYCTL" policy create --tenant-id "$BENCH_TENANT" --algorithm ES256 >/dev/null

# Server CPU time (user + system, all threads) in clock ticks: CPU per request
# is far less sensitive than req/s to other load on a shared machine.
server_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
printf "%-34s %10s %9s %9s %8s %12s %6s %9s\n" "durable ES256 sign over HTTP" "req/s" "p50" "p99" "errors" "openssl -multi" "ratio" "cpu/req"
SQLITE_64=""
for conns in ${HTTP_BENCH_CONNS:-1 64 1000}; do
  ticks_before=$(server_ticks)
  run_wrk "$conns" "$WORK/wrk.txt"
  ticks_after=$(server_ticks)
  requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.txt")
  cpu_us=$(awk -v t="$((ticks_after - ticks_before))" -v hz="$(getconf CLK_TCK)" -v n="${requests:-0}" \
    'BEGIN { if (n > 0) printf "%.0fus", t * 1e6 / hz / n; else print "n/a" }')
  [[ $conns -eq 64 ]] && SQLITE_64=$rps
  printf "%-34s %10s %9s %9s %8s %12s %6s %9s\n" "  $conns connections" "${rps:-n/a}" "${p50:-n/a}" "${p99:-n/a}" "$errs" "${BASE:-n/a}" "$(ratio "$rps" "$BASE")" "$cpu_us"
done
log "target: ratio >= 0.25 at 64 connections with p99 < 10ms (PERFORMANCE.md)"

# HSM path: ES256 in the server's SoftHSM2 dev token over HTTP, beside raw
# multi-threaded C_Sign on the same token (pkcs11_bench --data-dir), same run.
P11_BENCH=$BUILD_DIR/bin/pkcs11_bench
if [[ ${HTTP_BENCH_HSM:-1} == 0 ]]; then
  log "PKCS#11 over HTTP skipped (HTTP_BENCH_HSM=0)"
elif "$KEYCTL" policy create --tenant-id bench-hsm --algorithm ES256 --key-type hsm --provider pkcs11 >/dev/null 2>&1 &&
   [[ -x "$P11_BENCH" ]]; then
  BENCH_TENANT=bench-hsm run_wrk 64 "$WORK/wrk-hsm.txt"
  hsm_rps=$rps
  hsm_p99=$p99
  log "raw C_Sign on the same token (2 threads)"
  p11_line=$("$P11_BENCH" --seconds 4 --threads 2 --data-dir "$WORK/data" 2>/dev/null | awk '$1 == "2"')
  raw=$(awk '{ printf "%.0f", $2 }' <<<"$p11_line")
  # The backend signs with an in-memory session copy of the key on SoftHSM2
  # (docs/pkcs11.md), so raw C_Sign on that copy is printed too: the stricter
  # baseline for the same work.
  raw_copy=$(awk '{ printf "%.0f", $(NF - 1) }' <<<"$p11_line")
  printf "%-34s %10s %9s %24s %6s\n" "ES256 via PKCS#11 over HTTP (64c)" "${hsm_rps:-n/a}" "${hsm_p99:-n/a}" "raw C_Sign x2: ${raw:-n/a}" "$(ratio "$hsm_rps" "$raw")"
  printf "%-34s %10s %9s %24s %6s\n" "  same, vs C_Sign on a session copy" "${hsm_rps:-n/a}" "" "copy C_Sign x2: ${raw_copy:-n/a}" "$(ratio "$hsm_rps" "$raw_copy")"
  log "target: >= 0.7x of raw multi-threaded C_Sign (PERFORMANCE.md)"
else
  log "PKCS#11 over HTTP skipped (no dev token or pkcs11_bench not built)"
fi

# PostgreSQL: the same durable signing with the store and ledger in a local
# PostgreSQL server, alone on the machine (the SQLite server is stopped first).
stop_server
if start_pg_cluster "$PG_DIR"; then
  KEYCTL_LOG_LEVEL=warn start_keyctl_server "$KEYCTL" "$WORK/data-pg" "$WORK/serve-pg" --database-url "$PG_URL" || exit 1
  export KEYCTL_URL=$URL KEYCTL_TOKEN=$(cat "$WORK/data-pg/bootstrap-admin.token") BENCH_TENANT=bench-pg
  "$KEYCTL" policy create --tenant-id "$BENCH_TENANT" --algorithm ES256 >/dev/null
  run_wrk 64 "$WORK/wrk-pg.txt"
  printf "%-34s %10s %9s %9s %8s %12s %6s\n" "durable ES256, PostgreSQL (64c)" "${rps:-n/a}" "${p50:-n/a}" "${p99:-n/a}" "$errs" "${BASE:-n/a}" "$(ratio "$rps" "$BASE")"
  printf "%-34s %10s %32s %6s\n" "  PostgreSQL / SQLite at 64c" "" "SQLite: ${SQLITE_64:-n/a} req/s" "$(ratio "$rps" "$SQLITE_64")"
  stop_server
  stop_pg_cluster
else
  log "PostgreSQL run skipped: no local PostgreSQL server could be started"
fi
