#!/usr/bin/env bash
# Load runs against a release build of Ostiary on SQLite and PostgreSQL, then against the
# node-oidc-provider peer (../shared/peer-bench) in the same run, with our/peer ratios.
# Loopback only; every wrk run is bounded by DURATION.
#   DURATION  seconds per run (default 10)     CONNS  connection counts (default "1 64")
#   DBS       "sqlite postgres" (default)      ALGS   "RS256 ES256" (default)
#   PEER      1 to run the peer too (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh
DURATION=${DURATION:-10}
CONNS=${CONNS:-"1 64"}
DBS=${DBS:-"sqlite postgres"}
ALGS=${ALGS:-"RS256 ES256"}
PEER=${PEER:-1}
TARGET=http://127.0.0.1:8180
export BASIC
BASIC=$(printf 'bench-client:bench-secret-0123456789abcdef0123456789abcdef' | base64 -w0)
RESULTS=$(mktemp)
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked -q
cargo build --release --locked -q --example bench-assertions
# The private_key_jwt client's key (its public JWK goes into the configuration).
target/release/examples/bench-assertions "$WORK" "$TARGET" 0
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"

cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' /proc/"$1"/stat; }
rss_mb() { awk -v k="$2" '$1==k":"{printf "%.1f", $2/1024}' /proc/"$1"/status; }

# run NAME CONNS BODY PATH PID [SCRIPT]: one wrk run (SCRIPT defaults to bench/post.lua);
# appends "NAME c=N rps p50 p99 cores" to RESULTS.
run() {
  local name=$1 c=$2 body=$3 path=$4 pid=$5 script=${6:-bench/post.lua} out c0 c1 t0 t1
  c0=$(cpu "$pid"); t0=$(date +%s.%N)
  out=$(BODY="$body" wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$script" "$TARGET$path")
  c1=$(cpu "$pid"); t1=$(date +%s.%N)
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  p50=$(awk '$1=="50%"{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  errs=$(awk '/Non-2xx/{print $5}' <<<"$out")
  local cores
  cores=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%.2f", (b-a)/(t1-t0)}')
  printf "%-34s c=%-3s %10s req/s  p50 %-9s p99 %-9s server %s cores%s\n" "$name" "$c" "$rps" "$p50" "$p99" "$cores" \
    "${errs:+  NON-2XX: $errs}" | tee -a "$RESULTS"
}

bench_ostiary() { # DB ALG
  local db=$1 alg=$2 url
  if [ "$db" = postgres ]; then
    if [ -z "${PG_URL:-}" ]; then pg_start || { echo "PostgreSQL not available: skipped"; return 0; }; fi
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench" >/dev/null
    url=${PG_URL%/*}/bench
  else
    rm -f "$WORK"/bench.db*
    url="sqlite://$WORK/bench.db"
  fi
  sed -e "s|@DB@|$url|" -e "s|@DIR@|$WORK|" -e "s|@ALG@|$alg|" -e "s|@SIGNER_JWKS@|$(cat "$WORK/signer.jwks")|" \
    bench/config.toml.in > "$WORK/config.toml"
  RUST_LOG=warn target/release/ostiary serve --config "$WORK/config.toml" > "$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do curl -sf "$TARGET/healthz" >/dev/null && break; sleep 0.1; done
  echo "== ostiary on $db, $alg: idle RSS $(rss_mb $SERVER_PID VmRSS) MB; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  local jwt opaque tag="ostiary/$db/$alg"
  jwt=$(curl -sf -u bench-client:bench-secret-0123456789abcdef0123456789abcdef -d grant_type=client_credentials \
    -d scope=api:read "$TARGET/oauth2/v1/token" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  opaque=$(curl -sf -u bench-client:bench-secret-0123456789abcdef0123456789abcdef -d grant_type=client_credentials \
    -d resource=urn:bench:opaque "$TARGET/oauth2/v1/token" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  BODY="grant_type=client_credentials&scope=api%3Aread" wrk -t1 -c8 -d2s -s bench/post.lua "$TARGET/oauth2/v1/token" >/dev/null
  for c in $CONNS; do
    run "$tag cc jwt" "$c" "grant_type=client_credentials&scope=api%3Aread" /oauth2/v1/token $SERVER_PID
    run "$tag cc opaque" "$c" "grant_type=client_credentials&resource=urn%3Abench%3Aopaque" /oauth2/v1/token $SERVER_PID
    run "$tag introspect jwt" "$c" "token=$jwt" /oauth2/v1/introspect $SERVER_PID
    run "$tag introspect opaque" "$c" "token=$opaque" /oauth2/v1/introspect $SERVER_PID
    # Fresh assertions (each jti is used once), more than a run can use.
    target/release/examples/bench-assertions "$WORK" "$TARGET" $((DURATION * 25000))
    ASSERTIONS="$WORK/assertions.txt" run "$tag cc jwt, private_key_jwt" "$c" "" /oauth2/v1/token $SERVER_PID bench/assertion.lua
  done
  bench_signin "$tag"
  echo "   peak RSS $(rss_mb $SERVER_PID VmHWM) MB"
  kill $SERVER_PID; wait $SERVER_PID 2>/dev/null || true; SERVER_PID=""
}

# Browser sign-in paths, after one real sign-in with curl (the cookie jar is the browser):
# silent SSO authorization (session cookie -> 303 with a new code), userinfo with a JWT access
# token, and refresh-token rotation (one chain per connection).
# exchange_codes N: N silent authorizations and code exchanges in the signed-in session ($jar);
# sets TOKENS_ALL (the N refresh tokens) and ACCESS (the last access token).
exchange_codes() {
  local code body
  TOKENS_ALL=""
  for _ in $(seq 1 "$1"); do
    code=$(curl -s -o /dev/null -w '%{redirect_url}' -b "$jar" "$TARGET$authz" | sed -n 's/.*[?&]code=\([^&]*\).*/\1/p')
    body=$(curl -sf -u bench-web:bench-secret-0123456789abcdef0123456789abcdef "$TARGET/oauth2/v1/token" \
      -d grant_type=authorization_code -d code="$code" --data-urlencode redirect_uri=http://127.0.0.1:8181/cb)
    TOKENS_ALL="$TOKENS_ALL $(sed -E 's/.*"refresh_token":"([^"]+)".*/\1/' <<<"$body")"
  done
  ACCESS=$(sed -E 's/.*"access_token":"([^"]+)".*/\1/' <<<"$body")
}

bench_signin() { # TAG
  local tag=$1 page request csrf cookie maxc
  jar="$WORK/jar"
  authz="/oauth2/v1/authorize?response_type=code&client_id=bench-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A8181%2Fcb&scope=openid%20profile%20offline_access%20api%3Aread"
  rm -f "$jar"
  page=$(curl -sf -c "$jar" -b "$jar" "$TARGET$authz")
  request=$(sed -n 's/.*name="request" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
  csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
  curl -s -c "$jar" -b "$jar" -o /dev/null -d request="$request" -d csrf="$csrf" \
    -d username=bench-user -d password=bench-password "$TARGET/signin"
  cookie=$(awk '$6 ~ /^ostiary_session_/ {printf "%s=%s", $6, $7}' "$jar")
  [ -n "$cookie" ] || { echo "   sign-in failed: browser paths skipped"; return 0; }
  # One code exchange per connection of the largest run: the refresh chains (and an access token).
  maxc=$(tr ' ' '\n' <<<"$CONNS" | sort -n | tail -n1)
  exchange_codes "$maxc"
  local access=$ACCESS
  for c in $CONNS; do
    COOKIE="$cookie" run "$tag authorize (SSO, silent)" "$c" "" "$authz" $SERVER_PID bench/get.lua
    AUTH="Bearer $access" run "$tag userinfo" "$c" "" /oauth2/v1/userinfo $SERVER_PID bench/get.lua
    BASIC=$(printf 'bench-web:bench-secret-0123456789abcdef0123456789abcdef' | base64 -w0) \
      TOKENS=$(tr ' ' '\n' <<<"$TOKENS_ALL" | sed -n "2,$((c + 1))p" | tr '\n' ' ') \
      run "$tag refresh (rotation)" "$c" "" /oauth2/v1/token $SERVER_PID bench/refresh.lua
    # Every chain rotated: fresh ones for the next connection count.
    exchange_codes "$maxc"
  done
}

for db in $DBS; do for alg in $ALGS; do bench_ostiary "$db" "$alg"; done; done

if [ "$PEER" = 1 ] && command -v node >/dev/null; then
  for alg in $ALGS; do
    echo "== peer: node-oidc-provider, $alg access tokens (../shared/peer-bench)"
    (cd ../shared/peer-bench && DURATION=$DURATION CONNS="$CONNS" PEER_AT_ALG=$alg ./run.sh) 2>&1 | tee "$WORK/peer-$alg.txt" \
      | grep -E '^==|Requests/sec|99%|server CPU'
    # our/peer ratios, same connection counts, same run
    for c in $CONNS; do
      peer_cc=$(awk -v c="c=$c" '$0 ~ "client_credentials" && $NF==c {f=1; next} f && /Requests\/sec/ {print $2; exit}' "$WORK/peer-$alg.txt")
      peer_in=$(awk -v c="c=$c" '$0 ~ "introspection" && $NF==c {f=1; next} f && /Requests\/sec/ {print $2; exit}' "$WORK/peer-$alg.txt")
      for db in $DBS; do
        ours_cc=$(awk -v n="ostiary/$db/$alg cc jwt" -v c="c=$c" 'index($0, n) == 1 && $0 ~ (c " ") {for (i = 1; i <= NF; i++) if ($i ~ /^c=/) {print $(i+1); exit}}' "$RESULTS" | head -1)
        ours_in=$(awk -v n="ostiary/$db/$alg introspect opaque" -v c="c=$c" 'index($0, n) == 1 && $0 ~ (c " ") {for (i = 1; i <= NF; i++) if ($i ~ /^c=/) {print $(i+1); exit}}' "$RESULTS" | head -1)
        [ -n "$peer_cc" ] && [ -n "$ours_cc" ] && awk -v o="$ours_cc" -v p="$peer_cc" -v l="ratio $db $alg cc jwt c=$c" 'BEGIN{printf "%-40s ours/peer = %.1f (%s / %s req/s)\n", l, o/p, o, p}'
        [ -n "$peer_in" ] && [ -n "$ours_in" ] && awk -v o="$ours_in" -v p="$peer_in" -v l="ratio $db introspect opaque c=$c" 'BEGIN{printf "%-40s ours/peer = %.1f (%s / %s req/s)\n", l, o/p, o, p}'
      done
    done
  done
fi
