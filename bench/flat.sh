#!/usr/bin/env bash
# Flat cost as data grows (issue 6): the p50 latency of each endpoint on a store seeded with
# `ostiary seed` with a thousand users' rows and on one with a million (sessions, consents,
# refresh-token families and tokens), on SQLite and PostgreSQL, against a release build.
# Both stores are served at once (127.0.0.1:8380 the small one, 127.0.0.1:8383 the large one),
# and each endpoint is measured on one right after the other, so that load from elsewhere on
# the machine falls on both alike; ROUNDS repeats the whole sequence and the lowest p50 counts.
# Prints, per database and endpoint, both p50s, their ratio, and PASS when within LIMIT percent.
# Loopback only; every wrk run is bounded by DURATION.
#   DURATION  seconds per wrk run (default 10)     COUNTS  "SMALL LARGE" users (default "1000 1000000")
#   DBS       "sqlite postgres" (default)          CONNS   wrk connections (default 8)
#   ALG       signing algorithm (default ES256)    LIMIT   allowed p50 growth in % (default 20)
#   ROUNDS    measurements of each endpoint on each store (default 2)
#   PG_EXTRA  PostgreSQL server options, e.g. "-c shared_buffers=1GB" (default: none)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh
DURATION=${DURATION:-10}
COUNTS=${COUNTS:-"1000 1000000"}
DBS=${DBS:-"sqlite postgres"}
CONNS=${CONNS:-8}
ALG=${ALG:-ES256}
LIMIT=${LIMIT:-20}
ROUNDS=${ROUNDS:-2}
read -r SMALL LARGE <<<"$COUNTS"
declare -A PORT=([$SMALL]=8380 [$LARGE]=8383)
SECRET=bench-secret-0123456789abcdef0123456789abcdef
REDIRECT=http://127.0.0.1:8381/cb
RESULTS=$(mktemp)
WORK=$(mktemp -d)
declare -A PID=()
stop_servers() {
  local p
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PID=()
}
cleanup() { stop_servers; pg_stop; rm -rf "$WORK" "$RESULTS"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked -q
# A copy: another build in a shared target directory cannot swap the binary under the run.
cp "${CARGO_TARGET_DIR:-target}/release/ostiary" "$WORK/ostiary"
BIN=$WORK/ostiary
"$BIN" seed --help >/dev/null
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "settings: DURATION=$DURATION COUNTS=\"$COUNTS\" DBS=\"$DBS\" CONNS=$CONNS ALG=$ALG LIMIT=$LIMIT% ROUNDS=$ROUNDS"

rss_mb() { awk -v k="$2" '$1==k":"{printf "%.1f", $2/1024}' /proc/"$1"/status; }
# wrk's latency ("850.12us", "1.20ms", "1.01s") in microseconds.
to_us() { awk '{v=$1+0; if ($1 ~ /us$/) print v; else if ($1 ~ /ms$/) print v*1000; else if ($1 ~ /m$/) print v*60000000; else print v*1000000}' <<<"$1"; }

# run DB COUNT NAME PATH SCRIPT [BODY]: one wrk run on the server of COUNT; appends
# "DB|NAME|COUNT|p50us" to RESULTS.
run() {
  local db=$1 count=$2 name=$3 path=$4 script=$5 body=${6:-} out rps p50 p99 errs
  out=$(BODY="$body" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$script" "http://127.0.0.1:${PORT[$count]}$path")
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  p50=$(awk '$1=="50%"{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  errs=$(awk '/Non-2xx/{print $5}' <<<"$out")
  printf "  %-24s %8s users %9s req/s  p50 %-9s p99 %-9s%s\n" "$name" "$count" "$rps" "$p50" "$p99" "${errs:+  NON-2XX: $errs}"
  echo "$db|$name|$count|$(to_us "$p50")" >> "$RESULTS"
}

SCOPE="openid%20profile%20api%3Aread"
AUTHZ="/oauth2/v1/authorize?response_type=code&client_id=bench-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A8381%2Fcb&scope=$SCOPE"

# sign_in COUNT: one real sign-in with curl on that server (the cookie jar is the browser) and
# the consent, once; sets SESSION_COOKIE[COUNT].
declare -A SESSION_COOKIE=()
sign_in() {
  local count=$1 target=http://127.0.0.1:${PORT[$1]} jar=$WORK/jar-$1 page request csrf next action
  rm -f "$jar"
  page=$(curl -sf -c "$jar" -b "$jar" "$target$AUTHZ")
  request=$(sed -n 's/.*name="request" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
  csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
  next=$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' -d request="$request" -d csrf="$csrf" \
    -d username=bench-user -d password=bench-password "$target/signin")
  # The consent page, the first time.
  page=""
  case "$next" in "$target"/*) page=$(curl -s -c "$jar" -b "$jar" "$next") ;; esac
  if grep -q 'name="decision"' <<<"$page"; then
    action=$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
    request=$(sed -n 's/.*name="request" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
    csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
    curl -s -c "$jar" -b "$jar" -o /dev/null -d request="$request" -d csrf="$csrf" -d scope=openid \
      -d scope=profile -d scope=api:read -d decision=approve "$action"
  fi
  SESSION_COOKIE[$count]=$(awk '$6 ~ /^ostiary_session_/ {printf "%s=%s", $6, $7}' "$jar")
  [ -n "${SESSION_COOKIE[$count]}" ] || { echo "sign-in failed on the server of $count users" >&2; exit 1; }
}

# exchange_codes COUNT N: N silent authorizations and code exchanges in that server's session;
# sets REFRESH_ALL (the N refresh tokens, session-bound) and ACCESS (the last access token).
exchange_codes() {
  local target=http://127.0.0.1:${PORT[$1]} code body
  REFRESH_ALL=""
  for _ in $(seq 1 "$2"); do
    code=$(curl -s -o /dev/null -w '%{redirect_url}' -H "Cookie: ${SESSION_COOKIE[$1]}" "$target$AUTHZ" | sed -n 's/.*[?&]code=\([^&]*\).*/\1/p')
    body=$(curl -sf -u "bench-web:$SECRET" "$target/oauth2/v1/token" \
      -d grant_type=authorization_code -d code="$code" --data-urlencode redirect_uri=$REDIRECT)
    REFRESH_ALL="$REFRESH_ALL $(sed -E 's/.*"refresh_token":"([^"]+)".*/\1/' <<<"$body")"
  done
  ACCESS=$(sed -E 's/.*"access_token":"([^"]+)".*/\1/' <<<"$body")
}

client_token() { # COUNT FORM...: a client_credentials access token of bench-client
  local target=http://127.0.0.1:${PORT[$1]}
  shift
  curl -sf -u "bench-client:$SECRET" -d grant_type=client_credentials "$@" "$target/oauth2/v1/token" \
    | sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}

# seed_store DB COUNT: a fresh store (database flat_COUNT or file flat-COUNT.db) seeded with
# COUNT users' rows, and its configuration $WORK/config-COUNT.toml.
seed_store() {
  local db=$1 count=$2 url
  if [ "$db" = postgres ]; then
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS flat_$count" -c "CREATE DATABASE flat_$count" >/dev/null 2>&1
    url=${PG_URL%/*}/flat_$count
  else
    rm -f "$WORK/flat-$count".db*
    url="sqlite://$WORK/flat-$count.db"
  fi
  sed -e "s|@DB@|$url|" -e "s|@DIR@|$WORK|" -e "s|@ALG@|$ALG|" -e "s|@PORT@|${PORT[$count]}|" \
    bench/flat.toml.in > "$WORK/config-$count.toml"
  echo "== $db: seeding $count users; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  "$BIN" seed --config "$WORK/config-$count.toml" --count "$count" 2>/dev/null | sed 's/^/  /'
  if [ "$db" = postgres ]; then
    echo "  store size $(psql "$url" -Atc "SELECT pg_size_pretty(pg_database_size('flat_$count'))")"
  else
    echo "  store size $(du -sh "$WORK/flat-$count.db" | cut -f1)"
  fi
}

serve() { # COUNT: starts the server of that store and waits until it answers
  local count=$1 t0 t1
  t0=$(date +%s.%N)
  RUST_LOG=warn "$BIN" serve --config "$WORK/config-$count.toml" > "$WORK/server-$count.log" 2>&1 &
  PID[$count]=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:${PORT[$count]}/healthz" >/dev/null && break; sleep 0.1; done
  t1=$(date +%s.%N)
  echo "  $count users: serving after $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s, RSS $(rss_mb "${PID[$count]}" VmRSS) MB"
}

bench_db() { # DB
  local db=$1 c round
  for c in $SMALL $LARGE; do seed_store "$db" "$c"; done
  echo "== $db: both stores served"
  for c in $SMALL $LARGE; do serve "$c"; done
  declare -A jwt opaque revoked access refresh_one
  for c in $SMALL $LARGE; do
    jwt[$c]=$(client_token "$c" -d scope=api:read)
    opaque[$c]=$(client_token "$c" -d resource=urn:bench:opaque)
    revoked[$c]=$(client_token "$c" -d resource=urn:bench:opaque)
    sign_in "$c"
    exchange_codes "$c" 1
    access[$c]=$ACCESS
    refresh_one[$c]=$(awk '{print $1}' <<<"$REFRESH_ALL")
    BASIC=$(printf 'bench-client:%s' "$SECRET" | base64 -w0) BODY="grant_type=client_credentials&scope=api%3Aread" \
      wrk -t1 -c8 -d2s -s bench/post.lua "http://127.0.0.1:${PORT[$c]}/oauth2/v1/token" >/dev/null
  done
  local client_basic web_basic
  client_basic=$(printf 'bench-client:%s' "$SECRET" | base64 -w0)
  web_basic=$(printf 'bench-web:%s' "$SECRET" | base64 -w0)
  export BASIC
  for round in $(seq 1 "$ROUNDS"); do
    echo "-- $db, round $round of $ROUNDS; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    BASIC=$client_basic
    for c in $SMALL $LARGE; do run "$db" "$c" "cc jwt" /oauth2/v1/token bench/post.lua "grant_type=client_credentials&scope=api%3Aread"; done
    for c in $SMALL $LARGE; do run "$db" "$c" "cc opaque" /oauth2/v1/token bench/post.lua "grant_type=client_credentials&resource=urn%3Abench%3Aopaque"; done
    for c in $SMALL $LARGE; do run "$db" "$c" "introspect jwt" /oauth2/v1/introspect bench/post.lua "token=${jwt[$c]}"; done
    for c in $SMALL $LARGE; do run "$db" "$c" "introspect opaque" /oauth2/v1/introspect bench/post.lua "token=${opaque[$c]}"; done
    # The same token each time: revoked by the first request, looked up by every one.
    for c in $SMALL $LARGE; do run "$db" "$c" "revoke opaque" /oauth2/v1/revoke bench/post.lua "token=${revoked[$c]}"; done
    BASIC=$web_basic
    # A session-bound refresh token: its family, then its session by sid.
    for c in $SMALL $LARGE; do run "$db" "$c" "introspect refresh" /oauth2/v1/introspect bench/post.lua "token=${refresh_one[$c]}"; done
    for c in $SMALL $LARGE; do
      rm -f "$WORK/codes-$c"
      COOKIE="${SESSION_COOKIE[$c]}" CODES="$WORK/codes-$c" run "$db" "$c" "authorize (SSO, silent)" "$AUTHZ" bench/flat-authorize.lua
    done
    for c in $SMALL $LARGE; do
      CODES="$WORK/codes-$c" REDIRECT_URI="http%3A%2F%2F127.0.0.1%3A8381%2Fcb" \
        run "$db" "$c" "code exchange" /oauth2/v1/token bench/flat-code.lua
    done
    for c in $SMALL $LARGE; do AUTH="Bearer ${access[$c]}" run "$db" "$c" "userinfo" /oauth2/v1/userinfo bench/get.lua; done
    for c in $SMALL $LARGE; do
      exchange_codes "$c" "$CONNS"
      TOKENS="$REFRESH_ALL" run "$db" "$c" "refresh (rotation)" /oauth2/v1/token bench/refresh.lua
    done
  done
  for c in $SMALL $LARGE; do
    echo "  $c users: RSS after the runs $(rss_mb "${PID[$c]}" VmRSS) MB (peak $(rss_mb "${PID[$c]}" VmHWM) MB)"
    # (A new key-encryption key is expected: the stores are fresh.)
    if grep -iE '"level":"(WARN|ERROR)"' "$WORK/server-$c.log" | grep -qv 'KEY-ENCRYPTION KEY'; then
      echo "  server warnings:"
      grep -iE '"level":"(WARN|ERROR)"' "$WORK/server-$c.log" | grep -v 'KEY-ENCRYPTION KEY' | cut -c1-300 | head -5 | sed 's/^/    /'
    fi
  done
  stop_servers
}

for db in $DBS; do
  if [ "$db" = postgres ]; then pg_start || { echo "PostgreSQL not available: skipped"; continue; }; fi
  bench_db "$db"
done

echo "== p50 with $SMALL users seeded against $LARGE (lowest of $ROUNDS round(s); PASS within $LIMIT%)"
awk -F'|' -v lo="$SMALL" -v hi="$LARGE" -v limit="$LIMIT" '
  { key = $1 "|" $2; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    k3 = key "|" $3; if (!(k3 in p50) || $4 < p50[k3]) p50[k3] = $4 }
  END {
    fail = 0
    for (i = 1; i <= n; i++) {
      k = order[i]; a = p50[k "|" lo]; b = p50[k "|" hi]; split(k, f, "|")
      if (a == "" || b == "" || a == 0) { printf "%-9s %-24s missing\n", f[1], f[2]; fail++; continue }
      r = b / a; ok = (r <= 1 + limit / 100) ? "PASS" : "FAIL"; if (ok == "FAIL") fail++
      printf "%-9s %-24s p50 %8.0fus -> %8.0fus  ratio %.2f  %s\n", f[1], f[2], a, b, r, ok
    }
    printf "%d of %d endpoints outside %d%%\n", fail, n, limit
  }' "$RESULTS"
