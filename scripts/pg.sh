# Sourced by scripts/test.sh and bench/run.sh: a throwaway PostgreSQL cluster in a temporary
# directory. pg_start sets PG_URL (database "postgres", role "ostiary", trust auth on 127.0.0.1)
# and returns 1 when PostgreSQL is not installed; pg_stop stops it, removes the directory and
# clears PG_TMP and PG_URL (a PG_URL given from outside, with no PG_TMP, is left as it is).
# PG_EXTRA adds server options (e.g. "-c shared_buffers=1GB").

pg_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

pg_start() {
  PG_BIN=$(pg_bindir || true)
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_ctl" ]; then
    return 1
  fi
  PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ostiary-pg.XXXXXX")
  PG_RUN=()
  if [ "$(id -u)" = "0" ]; then
    # initdb refuses to run as root: run the cluster as an unprivileged user.
    local os_user=postgres
    id -u "$os_user" >/dev/null 2>&1 || os_user=nobody
    chown "$os_user" "$PG_TMP"
    PG_RUN=(runuser -u "$os_user" --)
  fi
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55439)
  "${PG_RUN[@]}" "$PG_BIN/initdb" -D "$PG_TMP/data" -A trust -U ostiary --no-sync >"$PG_TMP/initdb.log" 2>&1 || {
    cat "$PG_TMP/initdb.log" >&2; echo "error: initdb failed" >&2; return 2; }
  "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -w -l "$PG_TMP/server.log" \
    -o "-p $port -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 ${PG_EXTRA:-}" start >/dev/null || {
    cat "$PG_TMP/server.log" >&2; echo "error: PostgreSQL did not start" >&2; return 2; }
  PG_URL="postgres://ostiary@127.0.0.1:$port/postgres"
}

pg_stop() {
  if [ -n "${PG_TMP:-}" ] && [ -d "$PG_TMP" ]; then
    "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_TMP"
    # Forgotten, so that a later pg_start (bench/run.sh: one cluster per server) starts afresh.
    PG_TMP=""
    PG_URL=""
  fi
}
