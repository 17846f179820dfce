#!/usr/bin/env bash
# Signing throughput of our code next to `openssl speed`, measured in the same
# run on the same machine, so the ratio means something even on shared or
# throttled hardware. Both sides are single-threaded and count CPU time.
#
# Usage: bench/run.sh [--build-dir DIR]
#   BUILD_DIR        build tree holding bin/crypto_bench (default: <repo>/build)
#   CRYPTO_BENCH     explicit path to the crypto_bench binary (overrides BUILD_DIR)
#   OPENSSL_SECONDS  seconds per openssl speed measurement (default 3)
#   BENCH_MIN_TIME   Google Benchmark minimum seconds per benchmark (default 1)
#   BENCH_OUT        if set, a directory where the raw outputs are kept
# Total runtime with the defaults is about 35 s.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
BENCH=${CRYPTO_BENCH:-$BUILD_DIR/bin/crypto_bench}
OPENSSL_SECONDS=${OPENSSL_SECONDS:-3}
BENCH_MIN_TIME=${BENCH_MIN_TIME:-1}

command -v openssl >/dev/null || { echo "error: openssl CLI not found" >&2; exit 1; }
if [[ ! -x "$BENCH" ]]; then
  echo "error: $BENCH not found; build it first:" >&2
  echo "  cmake --build $BUILD_DIR --target crypto_bench" >&2
  exit 1
fi

if [[ -n "${BENCH_OUT:-}" ]]; then
  OUT=$BENCH_OUT
  mkdir -p "$OUT"
else
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT
fi

log() { echo "[bench] $*" >&2; }

log "$(openssl version), $(nproc) cores, $(uname -m)"
OPENSSL_ALGS=(ecdsap256 ecdsap384 rsa2048 ed25519)
step=0
for alg in "${OPENSSL_ALGS[@]}"; do
  step=$((step + 1))
  log "openssl speed $alg (${step}/${#OPENSSL_ALGS[@]}, ~$((2 * OPENSSL_SECONDS)) s: sign + verify)"
  # -mr: machine-readable "+F<n>:..." summary lines carrying ops per second.
  openssl speed -mr -seconds "$OPENSSL_SECONDS" "$alg" >"$OUT/openssl_$alg.txt" 2>&1 ||
    log "openssl speed $alg failed; see its output in BENCH_OUT"
done

log "crypto_bench (5 benchmarks, >= ${BENCH_MIN_TIME} s each)"
"$BENCH" --benchmark_min_time="$BENCH_MIN_TIME" --benchmark_format=csv \
  >"$OUT/crypto_bench.csv" 2>"$OUT/crypto_bench.stderr"

# openssl_rate FILE TAG BITS FIELD -> sign ops/s from a "+F" summary line.
#   +F2:i:2048:sign:verify (RSA)   +F4:i:256:sign:verify (ECDSA)
#   +F6:i:253:Ed25519:sign:verify (EdDSA)
openssl_rate() {
  awk -F: -v tag="$2" -v bits="$3" -v field="$4" \
    '$1 == tag && $3 == bits { print $field; found = 1; exit } END { if (!found) print "" }' "$1"
}

# ours_rate NAME -> items_per_second (column 7 of the CSV) for that benchmark.
ours_rate() {
  awk -F, -v name="\"$1\"" '$1 == name { print $7; exit }' "$OUT/crypto_bench.csv"
}

row() {  # what ours openssl
  awk -v what="$1" -v ours="$2" -v theirs="$3" 'BEGIN {
    o = (ours == "") ? "n/a" : sprintf("%.0f", ours)
    t = (theirs == "") ? "n/a" : sprintf("%.0f", theirs)
    r = (ours == "" || theirs == "" || theirs == 0) ? "n/a" : sprintf("%.2f", ours / theirs)
    printf "%-52s %10s %10s %6s\n", what, o, t, r
  }'
}

p256=$(openssl_rate "$OUT/openssl_ecdsap256.txt" +F4 256 4)
p384=$(openssl_rate "$OUT/openssl_ecdsap384.txt" +F4 384 4)
rsa=$(openssl_rate "$OUT/openssl_rsa2048.txt" +F2 2048 4)
ed=$(openssl_rate "$OUT/openssl_ed25519.txt" +F6 253 5)

echo
printf "%-52s %10s %10s %6s\n" "what (sign)" "ours/s" "openssl/s" "ratio"
printf "%-52s %10s %10s %6s\n" "----" "------" "---------" "-----"
row "ES256 crypto::SignDigest      vs ecdsap256" "$(ours_rate BM_CryptoSignDigest/ES256)" "$p256"
row "ES384 crypto::SignDigest      vs ecdsap384" "$(ours_rate BM_CryptoSignDigest/ES384)" "$p384"
row "PS256 crypto::SignDigest      vs rsa2048 (v1.5)" "$(ours_rate BM_CryptoSignDigest/PS256)" "$rsa"
row "Ed25519 crypto::SignDigest    vs ed25519" "$(ours_rate BM_CryptoSignDigest/Ed25519)" "$ed"
row "ES256 SoftwareBackend::Sign   vs ecdsap256" \
  "$(ours_rate BM_SoftwareBackendSignDigest/ES256)" "$p256"
echo
echo "ratio = ours / openssl. openssl speed reuses one prepared context per loop;"
echo "crypto::SignDigest builds a fresh EVP_PKEY_CTX and checks the key per call; the service"
echo "(SoftwareBackend::Sign) reuses pooled, pre-initialised contexts per key (PreparedSigner)."
echo "rsa2048 in openssl speed signs with PKCS#1 v1.5; PS256 adds PSS encoding (small next"
echo "to the private-key operation)."
