#!/usr/bin/env bash
# Soak run (not part of CI): a release build on PostgreSQL (DB=sqlite for SQLite), every endpoint
# mixed at 64 connections for SOAK_DURATION seconds (bench/soak.lua), with short token lifetimes
# and a short garbage-collection interval so that rows expire and are collected all along.
# Prints a verdict: zero 5xx, memory flat, expired rows within the garbage-collection bound.
#   SOAK_DURATION   seconds (default 600)          SOAK_CONNS  connections (default 64)
#   DB              postgres (default) or sqlite   ALG         RS256 or ES256 (default ES256)
#   BENCH_PORT      the server's port (default 8180)
#   SOAK_RSS_SLACK  allowed RSS growth after warm-up, in % (default 20)
#   SOAK_HEAP_EVERY seconds between readings of glibc's malloc (default 60; 0: none). Where gdb is
#                   installed, the sampler attaches for ~0.3 s and calls malloc_stats(): the C side
#                   of the server (SQLite's page caches and statements, aws-lc) allocates with
#                   glibc's malloc, the Rust side with mimalloc, so RSS is read apart by owner.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh
DURATION=${SOAK_DURATION:-600}
CONNS=${SOAK_CONNS:-64}
DB=${DB:-postgres}
ALG=${ALG:-ES256}
PORT=${BENCH_PORT:-8180}
SLACK=${SOAK_RSS_SLACK:-20}
HEAP_EVERY=${SOAK_HEAP_EVERY:-60}
command -v gdb >/dev/null || HEAP_EVERY=0
TARGET=http://127.0.0.1:$PORT
GC_INTERVAL=5
# The memory rule compares peaks: the highest RSS in the second fifth of the run (after a first
# fifth of warm-up, while SQLite's page caches fill) with the highest in the last fifth. RSS
# saw-tooths by about 5 MB a minute, so a single reading against a highest one judged the phase
# of the tooth more than growth (bench/README.md, "The soak").
WARM=$(( DURATION / 5 ))
WORK=$(mktemp -d)
SERVER_PID="" SAMPLER_PID=""
cleanup() {
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
  pg_stop; rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked -q
cargo build --release --locked -q --example bench-assertions
BIN="$WORK/bin"
mkdir -p "$BIN"
cp "${CARGO_TARGET_DIR:-target}/release/ostiary" "${CARGO_TARGET_DIR:-target}/release/examples/bench-assertions" "$BIN/"
"$BIN"/bench-assertions "$WORK" "$TARGET" 0

if [ "$DB" = postgres ]; then
  pg_start || { echo "PostgreSQL is not installed (DB=sqlite runs without it)" >&2; exit 1; }
  URL=$PG_URL
  sql() { psql "$PG_URL" -qAtF ' ' -c "$1"; }
else
  URL="sqlite://$WORK/soak.db"
  sql() { sqlite3 -separator ' ' "$WORK/soak.db" "$1"; }
fi
# Short lifetimes: access tokens 30 s, codes 30 s, refresh tokens idle 60 s and at most 120 s
# (chains older than that end with invalid_grant, as they should), GC every 5 s.
sed -e "s|@DB@|$URL|" -e "s|@DIR@|$WORK|" -e "s|@ALG@|$ALG|" -e "s|@PORT@|$PORT|g" \
  -e "s|@SIGNER_JWKS@|$(cat "$WORK/signer.jwks")|" \
  -e "/^\[server\]/a gc_interval = \"${GC_INTERVAL}s\"\ngc_batch = 20000" \
  -e "/^access_token_signing_alg/a access_token_lifetime = \"30s\"\ncode_lifetime = \"30s\"\nid_token_lifetime = \"30s\"\nrefresh_token_idle_lifetime = \"60s\"\nrefresh_token_max_lifetime = \"120s\"" \
  bench/config.toml.in > "$WORK/config.toml"
RUST_LOG=warn "$BIN"/ostiary serve --config "$WORK/config.toml" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -sf "$TARGET/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "$TARGET/healthz" >/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
rss_kb() { awk '$1=="VmRSS:"{print $2}' /proc/"$SERVER_PID"/status; }
echo "== soak: ostiary on $DB, $ALG, $CONNS connections, ${DURATION}s; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   idle RSS $(( $(rss_kb) / 1024 )) MB"

# The browser: one real sign-in, whose session cookie the silent authorizations use.
AUTHZ="/oauth2/v1/authorize?response_type=code&client_id=bench-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A8181%2Fcb&scope=openid%20profile%20offline_access%20api%3Aread"
jar="$WORK/jar"
page=$(curl -sf -c "$jar" -b "$jar" "$TARGET$AUTHZ")
request=$(sed -n 's/.*name="request" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
curl -s -c "$jar" -b "$jar" -o /dev/null -d request="$request" -d csrf="$csrf" \
  -d username=bench-user -d password=bench-password "$TARGET/signin"
COOKIE=$(awk '$6 ~ /^ostiary_session_/ {printf "%s=%s", $6, $7}' "$jar")
[ -n "$COOKIE" ] || { echo "sign-in failed" >&2; exit 1; }

# Tables with an expiry, and how long past it the garbage collector keeps rows (jti records 5
# minutes, for replicas whose clocks run behind; codes stay a
# day, to recognise a replayed code).
TABLES="tokens:0 revoked_jtis:300 assertion_jtis:300 auth_requests:0 sessions:0 auth_codes:86400 refresh_families:0 family_jtis:300 device_codes:86400 session_clients:0"
# expired_counts NOW: per table "name rows expired stale", where stale rows are those the
# collector should have removed by now: past expiry (and grace) by more than two GC intervals.
expired_counts() {
  local now=$1 t name grace q=""
  for t in $TABLES; do
    name=${t%%:*} grace=${t#*:}
    q="$q${q:+ UNION ALL }SELECT '$name', COUNT(*), COALESCE(SUM(CASE WHEN expires_at < $now THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN expires_at < $((now - grace - 2 * GC_INTERVAL)) THEN 1 ELSE 0 END), 0) FROM $name"
  done
  sql "$q"
}

# glibc_kb: "system in-use" KB of glibc's malloc in the server, all arenas and mmaps, as its
# malloc_stats() prints them to the server's stderr (the log); empty without gdb.
glibc_kb() {
  [ "$HEAP_EVERY" -gt 0 ] || return 0
  local n0
  n0=$(grep -c '^Total (incl' "$WORK/server.log" || true)
  # gdb exits 1 here after the call ("Couldn't write extended state status"): the call ran and
  # printed, and gdb could not restore the vector registers of the thread it borrowed, which sat
  # in a system call (the main thread, parked), whose caller keeps nothing in them. What tells
  # whether the call ran is a new block in the log.
  gdb -p "$SERVER_PID" -batch -ex 'call (void)malloc_stats()' </dev/null >/dev/null 2>&1 || true
  [ "$(grep -c '^Total (incl' "$WORK/server.log" || true)" -gt "${n0:-0}" ] || return 0
  awk '/^Total \(incl. mmap\):/ {t = 1; next}
    t && /^system bytes/ {s = $4} t && /^in use bytes/ {u = $5; t = 0}
    END {if (s != "") printf "%d %d", s / 1024, u / 1024}' "$WORK/server.log"
}
# Every 10 s: "seconds rss_kb stale_rows anon_kb file_kb [glibc_system_kb glibc_in_use_kb]", the
# last two every HEAP_EVERY seconds.
(
  t0=$(date +%s) next_heap=0
  while kill -0 "$SERVER_PID" 2>/dev/null; do
    now=$(date +%s)
    stale=$(expired_counts "$now" | awk '{s += $4} END {print s + 0}')
    heap=""
    if [ "$HEAP_EVERY" -gt 0 ] && [ $((now - t0)) -ge "$next_heap" ]; then
      heap=$(glibc_kb); next_heap=$((now - t0 + HEAP_EVERY))
    fi
    echo "$((now - t0)) $(rss_kb) $stale $(awk '$1=="RssAnon:"{a=$2} $1=="RssFile:"{f=$2} END{print a, f}' /proc/"$SERVER_PID"/status) $heap"
    sleep 10
  done
) > "$WORK/samples.txt" 2>/dev/null &
SAMPLER_PID=$!

out=$(CC_BASIC=$(printf 'bench-client:bench-secret-0123456789abcdef0123456789abcdef' | base64 -w0) \
  WEB_BASIC=$(printf 'bench-web:bench-secret-0123456789abcdef0123456789abcdef' | base64 -w0) \
  COOKIE="$COOKIE" AUTHZ="$AUTHZ" REDIRECT_URI=http://127.0.0.1:8181/cb \
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency -s bench/soak.lua "$TARGET/")
sleep 1
kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
grep -E 'Requests/sec|^ +(50|99)%|Socket errors|^soak:' <<<"$out" | sed 's/^/   /'
echo "   every 10 s: RSS, stale rows; RSS of anonymous memory and of files (the binary's code);"
echo "   glibc's malloc (the C side: SQLite, aws-lc) from the system and in use; RSS less glibc's:"
awk '{printf "     %4d s %7.1f MB %6d   anon %6.1f file %5.1f MB", $1, $2/1024, $3, $4/1024, $5/1024
  if ($7 != "") printf "   glibc %6.1f in use %6.1f   rest %6.1f MB", $6/1024, $7/1024, ($2-$6)/1024
  printf "\n"}' "$WORK/samples.txt"
echo "   peak RSS $(awk '$1=="VmHWM:"{printf "%.1f", $2/1024}' /proc/$SERVER_PID/status) MB"

now=$(date +%s)
echo "   rows per table at the end (rows, expired, stale = expired beyond the GC bound of 2 x ${GC_INTERVAL}s):"
expired_counts "$now" | awk '{printf "     %-18s %8d %8d %8d\n", $1, $2, $3, $4}' | tee "$WORK/rows.txt"
gc_warn=$(grep -c 'garbage collection failed' "$WORK/server.log" || true)

# Verdict.
fives=$(sed -n 's/^soak: 5xx \([0-9]*\)/\1/p' <<<"$out")
timeouts=$(awk '/Socket errors/{for (i = 1; i <= NF; i++) if ($i == "timeout") print $(i+1)}' <<<"$out" | tr -d ,)
stale=$(awk '{s += $4} END {print s + 0}' "$WORK/rows.txt")
read -r warm_rss end_rss <<<"$(awk -v w="$WARM" -v d="$DURATION" '
  $1 >= w && $1 < 2 * w {if ($2 > warm) warm = $2}
  $1 >= d - w {if ($2 > end) end = $2}
  END {print warm, end}' "$WORK/samples.txt")"
ok=1
verdict() { printf "   %-4s %s\n" "$1" "$2"; [ "$1" = ok ] || ok=0; }
[ "${fives:-x}" = 0 ] && verdict ok "zero 5xx" || verdict FAIL "5xx answers: ${fives:-unknown}"
[ "${timeouts:-0}" = 0 ] && verdict ok "no timeouts" || verdict FAIL "timeouts: $timeouts"
if [ -n "$warm_rss" ] && [ -n "$end_rss" ]; then
  growth=$(awk -v a="$warm_rss" -v b="$end_rss" 'BEGIN{printf "%.1f", 100 * (b - a) / a}')
  msg="highest RSS from ${WARM} to $((2 * WARM))s $(awk -v k="$warm_rss" 'BEGIN{printf "%.1f", k/1024}') MB, highest in the last ${WARM}s $(awk -v k="$end_rss" 'BEGIN{printf "%.1f", k/1024}') MB ($growth%, allowed $SLACK%)"
  awk -v g="$growth" -v s="$SLACK" 'BEGIN{exit !(g <= s)}' && verdict ok "memory flat: $msg" || verdict FAIL "memory grew: $msg"
else
  verdict FAIL "too few RSS samples"
fi
[ "$stale" = 0 ] && [ "$gc_warn" = 0 ] && verdict ok "expired rows within the GC bound (none expired for more than 2 x ${GC_INTERVAL}s)" \
  || verdict FAIL "$stale rows expired beyond the GC bound; $gc_warn failed collections"
[ "$ok" = 1 ] && echo "== soak verdict: PASS" || { echo "== soak verdict: FAIL"; exit 1; }
