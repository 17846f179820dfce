#!/usr/bin/env bash
# Installs the Debian 12 packages C2-Concierge needs to build, run and test.
# Idempotent: only missing packages are installed; safe to run on every `make`.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libssl-dev openssl
  libboost1.81-dev
  libsqlite3-dev sqlite3
  libpq-dev postgresql
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libtomlplusplus-dev
  libcurl4-openssl-dev curl
  libargon2-dev libjemalloc-dev
  libarchive-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  softhsm2 opensc libp11-kit-dev
  wrk
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
