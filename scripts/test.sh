#!/usr/bin/env bash
# The whole test suite: `cargo test` on SQLite, then again on PostgreSQL in a throwaway cluster
# started in a temporary directory and removed at the end. Extra arguments go to `cargo test`.
# Without PostgreSQL the second half is skipped with a notice, except under CI=true, where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

echo "== tests on SQLite =="
env -u OSTIARY_TEST_DATABASE_URL cargo test --locked "$@"

trap pg_stop EXIT
status=0
pg_start || status=$?
if [ "$status" = 1 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "error: PostgreSQL is not installed; CI must test on PostgreSQL" >&2
    exit 1
  fi
  echo "notice: PostgreSQL is not installed (no initdb found): the PostgreSQL half of the suite was SKIPPED."
  echo "notice: install it (Debian: apt-get install postgresql) to run it."
  exit 0
elif [ "$status" != 0 ]; then
  exit 1
fi

echo "== tests on PostgreSQL (throwaway cluster, ${PG_URL%/*}) =="
OSTIARY_TEST_DATABASE_URL="$PG_URL" cargo test --locked "$@"
