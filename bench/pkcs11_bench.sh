#!/usr/bin/env bash
# PKCS#11 (SoftHSM2) signing throughput: our backend vs raw C_Sign on the same
# key, same run. Called by bench/run.sh; usable alone:
#   bench/pkcs11_bench.sh [BUILD_DIR] [extra pkcs11_bench args]
set -euo pipefail
BUILD_DIR="${1:-build}"
shift || true
BIN="$BUILD_DIR/bin/pkcs11_bench"
if [[ ! -x "$BIN" ]]; then
  echo "pkcs11_bench not built ($BIN); run: cmake --build $BUILD_DIR --target pkcs11_bench" >&2
  exit 1
fi
"$BIN" --seconds "${PKCS11_BENCH_SECONDS:-4}" --threads 1,2 "$@"
