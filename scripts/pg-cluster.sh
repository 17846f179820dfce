# Sourced by scripts that need a throwaway PostgreSQL server (bench/http_bench.sh).
#
# start_pg_cluster DIR
#   initdb in DIR/data and starts `postgres` on a free loopback port (TCP only,
#   trust authentication for user postgres, PostgreSQL's durability defaults:
#   fsync and synchronous_commit on). As root, both run as the `postgres` user
#   (initdb refuses root) and DIR is handed to it, so DIR must be reachable by
#   that user (e.g. a fresh `mktemp -d`, not a directory inside one). Sets PG_PID and PG_URL
#   (postgresql://postgres@127.0.0.1:PORT/postgres). Returns 1 with the log on
#   stderr when it cannot start.
# stop_pg_cluster
#   Fast shutdown of the server started above.
start_pg_cluster() {
  local dir="$1" bindir as=() port _
  bindir=$(pg_config --bindir 2>/dev/null || true)
  [[ -x "$bindir/initdb" ]] || bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [[ -x "$bindir/initdb" ]] || { echo "no PostgreSQL server binaries (install postgresql)" >&2; return 1; }
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres "$dir"
    # setpriv execs in place (unlike runuser), so $! below is the server's pid.
    as=(setpriv --reuid=postgres --regid=postgres --clear-groups)
  fi
  if ! "${as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    return 1
  fi
  for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue  # taken
    "${as[@]}" "$bindir/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 \
      -c unix_socket_directories= >"$dir/server.log" 2>&1 &
    PG_PID=$!
    PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    local i
    for i in $(seq 1 300); do
      "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" && return 0
      kill -0 "$PG_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill "$PG_PID" 2>/dev/null || true
    wait "$PG_PID" 2>/dev/null || true
  done
  cat "$dir/server.log" >&2
  echo "postgres did not start" >&2
  return 1
}

stop_pg_cluster() {
  [[ -n "${PG_PID:-}" ]] || return 0
  kill -INT "$PG_PID" 2>/dev/null || true
  wait "$PG_PID" 2>/dev/null || true
  PG_PID=""
}
