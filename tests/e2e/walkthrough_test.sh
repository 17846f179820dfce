#!/usr/bin/env bash
# The README's 5-minute walkthrough, run for real: start `keyctl serve` on a
# fresh data dir, create a policy with the CLI, sign a file, fetch the public
# key and verify the signature with `openssl dgst -verify`. Also checks that CLI
# errors are one readable line with a non-zero exit code.
set -euo pipefail

KEYCTL="${1:?usage: walkthrough_test.sh path/to/keyctl}"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=../../scripts/keyctl-server.sh
source "$(dirname "$0")/../../scripts/keyctl-server.sh"

cd "$WORK"
start_keyctl_server "$KEYCTL" "$WORK/data" "$WORK/serve" || fail "server did not start"
grep -q "bootstrap admin token written to $WORK/data/bootstrap-admin.token" "$WORK/serve.out" || fail "no bootstrap path printed"
[ "$(stat -c %a "$WORK/data/bootstrap-admin.token")" = "600" ] || fail "bootstrap token is not mode 0600"

export KEYCTL_URL="$URL"
export KEYCTL_TOKEN="$(cat "$WORK/data/bootstrap-admin.token")"
# The token must never be logged.
if grep -qF "$KEYCTL_TOKEN" "$WORK/serve.log" "$WORK/serve.out"; then fail "token appears in server output"; fi

# --- the walkthrough, exactly as in README.md ---
"$KEYCTL" policy create --tenant-id acme-news --algorithm ES256 --key-type software --provider software --rotation-days 30
echo "my first C2PA asset" > asset.jpg
"$KEYCTL" sign --tenant-id acme-news --file asset.jpg --out asset.sig --asset-id urn:example:asset-1
"$KEYCTL" key pubkey --tenant-id acme-news --out acme-news.pem
openssl dgst -sha256 -verify acme-news.pem -signature asset.sig asset.jpg | tee verify.out
grep -q "Verified OK" verify.out || fail "openssl did not verify the signature"
"$KEYCTL" verify --tenant-id acme-news --file asset.jpg --signature-file asset.sig
"$KEYCTL" policy list
"$KEYCTL" key list --tenant-id acme-news
"$KEYCTL" ledger list --tenant-id acme-news | grep -q "urn:example:asset-1" || fail "signature missing from ledger"
"$KEYCTL" -o json policy get --tenant-id acme-news | grep -q '"policy_hash"' || fail "json output lacks policy_hash"

# The audit log: a checkpoint checked by openssl, then the whole log by keyctl.
"$KEYCTL" audit checkpoint --note-out note.txt --sig-out note.sig --key-out audit.pem >/dev/null
openssl dgst -sha256 -verify audit.pem -signature note.sig note.txt | grep -q "Verified OK" || fail "checkpoint did not verify"
"$KEYCTL" audit entries | grep -q "sign.digest" || fail "signature missing from the audit log"
"$KEYCTL" audit verify --public-key audit.pem | grep -q "audit log OK" || fail "audit log did not verify"

# A tampered file must not verify, through keyctl or openssl.
echo "tampered" >> asset.jpg
if "$KEYCTL" verify --tenant-id acme-news --file asset.jpg --signature-file asset.sig; then fail "tampered asset verified"; fi
if openssl dgst -sha256 -verify acme-news.pem -signature asset.sig asset.jpg; then fail "openssl verified a tampered asset"; fi

# --- errors: non-zero exit and exactly one readable line ---
check_error() {  # check_error "expected text" cmd...
  local expect="$1"; shift
  set +e
  "$@" >"$WORK/err.out" 2>"$WORK/err.txt"
  local rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "expected failure: $*"
  [ "$(wc -l < "$WORK/err.txt")" -eq 1 ] || { cat "$WORK/err.txt" >&2; fail "error is not one line: $*"; }
  grep -q "$expect" "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; fail "error lacks '$expect': $*"; }
}
check_error "invalid API key" "$KEYCTL" --token "kc_0000000000000000.$(printf 'a%.0s' $(seq 64))" policy list
check_error "not found" "$KEYCTL" sign --tenant-id nobody-here --digest "$(printf 'ab%.0s' $(seq 32))"
check_error "digest" "$KEYCTL" sign --tenant-id acme-news --digest abcd
check_error "algorithm" "$KEYCTL" policy create --tenant-id beta-co --algorithm ES999
check_error "cannot reach" "$KEYCTL" --url http://127.0.0.1:1 policy list
check_error "already has a policy" "$KEYCTL" policy create --tenant-id acme-news --algorithm ES256
check_error "cannot open" "$KEYCTL" audit verify --db "$WORK/no-such.db"

# The server is still healthy after all of that.
"$KEYCTL" status
echo "walkthrough: PASS"
