#!/usr/bin/env bash
# Instructions per request, counted by callgrind: the server's own CPU work for each kind of
# request, in a measure that does not drift with the machine (the same build gives the same counts
# within 1 to 3 % whatever else runs; wall-clock rates on this machine move by a factor of three in
# a day). One request at a time, so nothing is grouped: this is the work of a lone request, at
# c = 1. The server runs under valgrind --tool=callgrind, built with symbols into
# target/callgrind (or $CARGO_TARGET_DIR/callgrind), with bench/quiet.toml.in (background jobs
# parked); the client (bench/instructions.py) zeroes the counters after a warm-up of each kind and
# dumps them after K requests. Work on the server's other threads (the audit writer, the pool) is
# counted with the request that caused it. PostgreSQL's own work is not counted (it runs outside
# valgrind); SQLite's is (it runs inside the server).
#   K     requests per kind (default 200)
#   SIGNIN_K  password sign-ins, each a pair (the sign-in page and its POST, argon2 included),
#         counted as one "signin-pair" (default 20: under callgrind argon2 takes about a second)
#   DB    sqlite (default) or postgres (a throwaway cluster, scripts/pg.sh)
#   TOP   N > 0: under each kind, its N functions with the most instructions of their own
#   BIN   a server binary to count instead of building one (for a build kept aside; TOP needs
#         its symbols)
#   PORT  the server's port (default 8580)
#   KEEP  a directory to copy the callgrind files into (one a kind, for callgrind_annotate or
#         kcachegrind: --inclusive=yes shows what each of the server's functions costs in all)
# Takes about two minutes with K=200 (the build aside): the server runs 30 to 50 times slower.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh
K=${K:-200}
DB=${DB:-sqlite}
TOP=${TOP:-0}
PORT=${PORT:-8580}
T=http://127.0.0.1:$PORT
for tool in valgrind callgrind_control callgrind_annotate python3 curl; do
  command -v $tool >/dev/null || { echo "$tool is missing (apt-get install valgrind python3 curl)" >&2; exit 1; }
done
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT

if [ -z "${BIN:-}" ]; then
  TARGET_DIR=${CARGO_TARGET_DIR:-target}/callgrind
  CARGO_TARGET_DIR=$TARGET_DIR CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --release --locked -q --bin ostiary
  BIN=$TARGET_DIR/release/ostiary
fi
cp "$BIN" "$WORK/ostiary"

if [ "$DB" = postgres ]; then
  pg_start || { echo "PostgreSQL is not installed" >&2; exit 1; }
  psql "$PG_URL" -qc "CREATE DATABASE ins" >/dev/null
  url=${PG_URL%/*}/ins
else
  url="sqlite://$WORK/ins.db"
fi
sed -e "s|@DB@|$url|" -e "s|@DIR@|$WORK|" -e "s|@PORT@|$PORT|g" bench/quiet.toml.in > "$WORK/config.toml"
cd "$WORK"
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
  ./ostiary serve --config config.toml > server.log 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do curl -sf "$T/healthz" >/dev/null && break; sleep 0.5; done
curl -sf "$T/healthz" >/dev/null || { cat server.log >&2; exit 1; }

echo "instructions per request, $("$WORK/ostiary" --version 2>/dev/null || echo ostiary) on $DB, ES256, K=$K, one request at a time"
python3 "$OLDPWD/bench/instructions.py" "$PORT" "$SERVER_PID" "$K" > client.txt || { cat client.txt server.log >&2; exit 1; }
dumps=$(ls "$WORK"/cg.out.* | sort -t. -k3 -n)
# Frames open across the whole count (the threads' starts, the runtime's loop): callgrind's
# files give them the count of everything under them as their own, so they are left out.
OPEN_FRAMES='PROGRAM TOTALS|clone\.S|pthread_create|thread_start|call_once\{\{vtable|__rust_begin_short_backtrace|tokio-[0-9.]+/src/runtime/(context|blocking|scheduler|task)'
while read -r name requests statuses; do
  file=$(grep -l "^desc: Trigger: dump $name\$" $dumps)
  total=$(sed -n 's/^summary: //p;s/^totals: //p' "$file" | head -n1)
  printf '%-26s %12d instructions a request   (%s requests: %s)\n' "$name" $((total / requests)) "$requests" "$statuses"
  if [ "$TOP" -gt 0 ]; then
    { callgrind_annotate --inclusive=no --auto=no --threshold=100 "$file" 2>/dev/null || true; } |
      grep -E '^ *[0-9,]+ ' | grep -vE "$OPEN_FRAMES" | head -n "$TOP" |
      awk -v k="$requests" '{ n = $1; gsub(",", "", n); $1 = ""; sub(/^ *(\([^)]*\) *)?/, ""); printf "    %10d  %s\n", n / k, $0 }' || true
  fi
done < client.txt
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  for file in $dumps; do cp "$file" "$KEEP/$(sed -n 's/^desc: Trigger: dump //p' "$file").callgrind"; done
fi
