#!/usr/bin/env bash
# CPU microseconds per durable sign request (server process), CONNS (default 64)
# connections: far less sensitive than req/s to other load on a shared machine,
# so compare binaries by running them back to back.
# Usage: bench/cpu_per_req.sh [KEYCTL]   Env: SECS, CONNS, PERF=1 (perf record to PERF_OUT)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYCTL=${1:-$ROOT/build/bin/keyctl}
SECS=${SECS:-8}
CONNS=${CONNS:-64}
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() { [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
source "$ROOT/scripts/keyctl-server.sh"
KEYCTL_LOG_LEVEL=warn start_keyctl_server "$KEYCTL" "$WORK/data" "$WORK/serve" >/dev/null || exit 1
export KEYCTL_URL=$URL KEYCTL_TOKEN=$(cat "$WORK/data/bootstrap-admin.token") BENCH_TENANT=bench-tenant
"$KEYCTL" policy create --tenant-id "$BENCH_TENANT" --algorithm ES256 >/dev/null
wrk -t2 -c64 -d2s -s "$ROOT/bench/sign.lua" "$URL" >/dev/null 2>&1 || true
tck=$(getconf CLK_TCK)
metric() { curl -s "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
c0=$(metric keyctl_ledger_commits_total); r0=$(metric keyctl_ledger_rows_total)
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$SERVER_PID/stat)
[[ -n "${PERF:-}" ]] && (perf record -F 2000 -g -p $SERVER_PID -o "${PERF_OUT:-perf.data}" -- sleep $((SECS-2)) >/dev/null 2>&1 &)
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$ROOT/bench/sign.lua" "$URL" >"$WORK/wrk.txt" 2>&1 || true
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$SERVER_PID/stat)
c1=$(metric keyctl_ledger_commits_total); r1=$(metric keyctl_ledger_rows_total)
reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$WORK/wrk.txt")
p99=$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.txt")
errs=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$WORK/wrk.txt")
awk -v u=$((u1-u0)) -v s=$((s1-s0)) -v t=$tck -v n=$reqs -v r=$rps -v p=$p99 -v e=$errs -v rc=$(awk -v c=$((c1-c0)) -v r=$((r1-r0)) 'BEGIN { print (c > 0 ? r / c : 0) }') 'BEGIN { printf "req/s %s p99 %s errors %s  server CPU/req: user %.1f us, sys %.1f us, total %.1f us, rows/commit %.1f\n", r, p, e, u/t/n*1e6, s/t/n*1e6, (u+s)/t/n*1e6, rc }'
