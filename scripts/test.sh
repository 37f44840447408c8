#!/usr/bin/env bash
# The whole test suite: `cargo test` on SQLite, then again on PostgreSQL in a throwaway cluster
# started in a temporary directory and removed at the end. Extra arguments go to `cargo test`.
# Without PostgreSQL the second half is skipped with a notice, except under CI=true, where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== tests on SQLite =="
env -u OSTIARY_TEST_DATABASE_URL cargo test --locked "$@"

pg_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

BIN=$(pg_bindir || true)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ] || [ ! -x "$BIN/pg_ctl" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "error: PostgreSQL is not installed; CI must test on PostgreSQL" >&2
    exit 1
  fi
  echo "notice: PostgreSQL is not installed (no initdb found): the PostgreSQL half of the suite was SKIPPED."
  echo "notice: install it (Debian: apt-get install postgresql) to run it."
  exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ostiary-pg.XXXXXX")
RUN=()
if [ "$(id -u)" = "0" ]; then
  # initdb refuses to run as root: run the cluster as an unprivileged user.
  PGUSER_OS=postgres
  id -u "$PGUSER_OS" >/dev/null 2>&1 || PGUSER_OS=nobody
  chown "$PGUSER_OS" "$TMP"
  RUN=(runuser -u "$PGUSER_OS" --)
fi

cleanup() {
  "${RUN[@]}" "$BIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55439)
"${RUN[@]}" "$BIN/initdb" -D "$TMP/data" -A trust -U ostiary --no-sync >"$TMP/initdb.log" 2>&1 || {
  cat "$TMP/initdb.log" >&2; echo "error: initdb failed" >&2; exit 1; }
"${RUN[@]}" "$BIN/pg_ctl" -D "$TMP/data" -w -l "$TMP/server.log" \
  -o "-p $PORT -k $TMP -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null || {
  cat "$TMP/server.log" >&2; echo "error: PostgreSQL did not start" >&2; exit 1; }

echo "== tests on PostgreSQL (throwaway cluster on 127.0.0.1:$PORT) =="
OSTIARY_TEST_DATABASE_URL="postgres://ostiary@127.0.0.1:$PORT/postgres" cargo test --locked "$@"
