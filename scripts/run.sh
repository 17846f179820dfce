#!/usr/bin/env bash
# Starts `keyctl serve` on the embedded defaults and tells the user how to use it.
set -euo pipefail
KEYCTL="$1"; DATA_DIR="$2"; LISTEN="$3"
URL="http://${LISTEN}"
cat <<MSG

  C2-Concierge is starting on ${URL} (data in ${DATA_DIR}).

  In another terminal:
    export KEYCTL_URL=${URL}
    export KEYCTL_TOKEN=\$(cat ${DATA_DIR}/bootstrap-admin.token)
    ${KEYCTL} policy create --tenant-id acme-news --algorithm ES256 --key-type software --provider software --rotation-days 30
  Keys in a (SoftHSM2) hardware token instead, initialised for you in ${DATA_DIR}/softhsm:
    ${KEYCTL} policy create --tenant-id acme-hsm --algorithm ES256 --key-type hsm --provider pkcs11
  then follow the walkthrough in README.md. Stop the server with Ctrl-C.

MSG
exec "$KEYCTL" serve --listen "$LISTEN" --data-dir "$DATA_DIR"
