# Sourced by scripts that need a throwaway `keyctl serve` (the e2e walkthrough
# test and bench/http_bench.sh).
#
# start_keyctl_server KEYCTL DATA_DIR OUT_PREFIX [SERVE_ARGS...]
#   Starts the server on a port the OS picks, with stdout in OUT_PREFIX.out and
#   stderr in OUT_PREFIX.log, and waits (bounded, ~20 s) for its "listening on"
#   line. SERVE_ARGS go to `keyctl serve` (e.g. --database-url URL). Sets
#   SERVER_PID and URL. Returns 1, with the server's log on stderr, if it exits
#   early or never reports its address.
start_keyctl_server() {
  local keyctl="$1" data_dir="$2" out="$3"
  shift 3
  "$keyctl" serve --listen 127.0.0.1:0 --data-dir "$data_dir" "$@" >"$out.out" 2>"$out.log" &
  SERVER_PID=$!
  URL=""
  local _
  for _ in $(seq 1 200); do
    URL="$(sed -n 's/^keyctl serve: listening on \(http[^ ]*\)$/\1/p' "$out.out")"
    [ -n "$URL" ] && return 0
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      cat "$out.log" >&2
      echo "keyctl serve exited early" >&2
      return 1
    fi
    sleep 0.1
  done
  cat "$out.log" >&2
  echo "keyctl serve did not report its address" >&2
  return 1
}
