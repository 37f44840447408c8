#!/usr/bin/env bash
# Store round trips per request, for each endpoint, on PostgreSQL: what bounds scale-out when
# several replicas share one database. A throwaway cluster logs every statement
# (log_statement=all); a release server with its background jobs parked (hourly) answers K
# requests of each kind, one at a time, after a warm-up (so prepared statements are cached); the
# statements it sent in each phase are counted in the log and divided by K.
#   K       requests per kind (default 20)
#   PORT    the server's port (default 8480)
#   STRACE  1 (default when strace exists): also count the writes to the database sockets, the
#           wire round trips, which include what the log cannot show (the pool's liveness ping
#           on every connection checkout, and statement preparation)
#   SHOW    1 to list each phase's statements (first 110 characters, with counts)
#   KEEP    a directory to keep each phase's strace log in (for a closer look)
# Prints per request: statements (every execute and simple statement, BEGIN/COMMIT included),
# transactions, pings (a bare Sync message, invisible in the log: sqlx's pool sent one on every
# return of a connection; the pool of src/store/pool.rs sends none, so 0 is expected), and wire
# round trips (a write to a database socket after its last reply: statements + pings + any
# statement preparation). Takes about 45 s with K=20 (the release build aside).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh
K=${K:-20}
PORT=${PORT:-8480}
T=http://127.0.0.1:$PORT
STRACE=${STRACE:-$(command -v strace >/dev/null && echo 1 || echo 0)}
SECRET=bench-secret-0123456789abcdef0123456789abcdef
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT

command -v psql >/dev/null || { echo "psql is missing" >&2; exit 1; }
TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -q
# A private copy: another build into a shared target directory cannot swap it mid-run.
cp "$TARGET_DIR/release/ostiary" "$WORK/ostiary"
pg_start || { echo "PostgreSQL is not installed" >&2; exit 1; }
PG_LOG=$PG_TMP/server.log
psql "$PG_URL" -qc "CREATE DATABASE rt" -c "ALTER DATABASE rt SET log_statement = 'all'" >/dev/null

sed -e "s|@DB@|${PG_URL%/*}/rt|" -e "s|@DIR@|$WORK|" -e "s|@PORT@|$PORT|g" bench/quiet.toml.in > "$WORK/config.toml"
RUST_LOG=warn "$WORK/ostiary" serve --config "$WORK/config.toml" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -sf "$T/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "$T/healthz" >/dev/null || { cat "$WORK/server.log" >&2; exit 1; }

# Request helpers; every one must succeed (a failed request would count the wrong path).
cc() { curl -sf -u "bench-client:$SECRET" -d grant_type=client_credentials "$@" "$T/oauth2/v1/token"; }
field() { sed -nE "s/.*\"$1\":\"([^\"]+)\".*/\1/p"; }
web() { curl -sf -u "bench-web:$SECRET" "$@"; }
AUTHZ="/oauth2/v1/authorize?response_type=code&client_id=bench-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A8181%2Fcb&scope=openid%20profile%20offline_access%20api%3Aread"
code_of() { sed -n 's/.*[?&]code=\([^&]*\).*/\1/p'; }

# A browser i: its jar, its sign-in page, then its session.
login_page() { curl -sf -c "$WORK/jar$1" -b "$WORK/jar$1" "$T$AUTHZ" > "$WORK/page$1"; }
sign_in() {
  local request csrf
  request=$(sed -n 's/.*name="request" value="\([^"]*\)".*/\1/p' "$WORK/page$1" | head -n1)
  csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' "$WORK/page$1" | head -n1)
  curl -s -c "$WORK/jar$1" -b "$WORK/jar$1" -o /dev/null -w '%{redirect_url}' -d request="$request" -d csrf="$csrf" \
    -d username=bench-user -d password=bench-password "$T/signin" | code_of > "$WORK/code$1"
  [ -s "$WORK/code$1" ] || { echo "sign-in $1 failed" >&2; exit 1; }
}
silent() { curl -s -o /dev/null -w '%{redirect_url}' -b "$WORK/jar$1" "$T$AUTHZ&prompt=none" | code_of > "$WORK/silent$1"; [ -s "$WORK/silent$1" ]; }
exchange() { # CODEFILE OUT
  web "$T/oauth2/v1/token" -d grant_type=authorization_code -d code="$(cat "$1")" \
    --data-urlencode redirect_uri=http://127.0.0.1:8181/cb > "$2"
}

# The database sockets of the server (file descriptors of its connections to PostgreSQL).
pg_port=${PG_URL##*:}; pg_port=${pg_port%%/*}
pg_fds() { ss -tnpH state established "( dport = :$pg_port )" 2>/dev/null | grep -o "pid=$SERVER_PID,fd=[0-9]*" | sed 's/.*fd=//' | sort -u | paste -sd'|'; }

# Wire round trips in an strace log (-f, one line per call, "TID call(fd, ...) = result"; calls
# split by other threads as "<unfinished ...>" / "<... call resumed>"): a round trip is the first
# write to a database socket after a reply was read from it.
cat > "$WORK/rt.awk" <<'EOF'
BEGIN { split(fds, f, "|"); for (i in f) db[f[i]] = 1 }
function op(call, fd, line) {
  if (!(fd in db)) return
  if (call ~ /^(sendto|write|writev|sendmsg)$/) { if (!(fd in w)) { n++; w[fd] = 1 } }
  else if (line !~ /= -1 E/) delete w[fd]
}
/<unfinished \.\.\.>/ { if (match($0, /[a-z]+\([0-9]+/)) { split(substr($0, RSTART, RLENGTH), p, "("); pend[$1] = p[1] " " p[2] } next }
/<\.\.\. [a-z]+ resumed>/ { if ($1 in pend) { split(pend[$1], p, " "); op(p[1], p[2], $0); delete pend[$1] } next }
{ if (match($0, /[a-z]+\([0-9]+/)) { split(substr($0, RSTART, RLENGTH), p, "("); op(p[1], p[2], $0) } }
END { print n + 0 }
EOF

# measure NAME CMD...: runs CMD i for i in 1..K; prints the statement counts per request.
printf '%-38s %10s %12s %10s %10s\n' "endpoint (K=$K each)" statements transactions "pings" "wire RTs"
measure() {
  local name=$1; shift
  local before after st tx rt="-" pings="-" spid=""
  sleep 0.2
  before=$(wc -l < "$PG_LOG")
  if [ "$STRACE" = 1 ]; then
    strace -f -qq -e trace=sendto,write,writev,sendmsg,recvfrom,read,readv,recvmsg -p "$SERVER_PID" -o "$WORK/strace" 2>/dev/null &
    spid=$!
    sleep 0.5
  fi
  for i in $(seq 1 "$K"); do "$@" "$i"; done
  sleep 0.3
  if [ -n "$spid" ]; then kill "$spid"; wait "$spid" 2>/dev/null || true; fi
  after=$(wc -l < "$PG_LOG")
  sed -n "$((before + 1)),${after}p" "$PG_LOG" > "$WORK/phase.log"
  st=$(grep -cE 'LOG:  (execute [^:]*|statement): ' "$WORK/phase.log" || true)
  tx=$(grep -ciE 'LOG:  (execute [^:]*|statement): BEGIN' "$WORK/phase.log" || true)
  if [ -n "$spid" ]; then
    local fds
    fds=$(pg_fds)
    rt=$(awk -v fds="$fds" -f "$WORK/rt.awk" "$WORK/strace")
    [ -n "${KEEP:-}" ] && { mkdir -p "$KEEP"; cp "$WORK/strace" "$KEEP/${name//[^a-z]/_}.strace"; echo "$fds" > "$KEEP/fds"; }
    rt=$(awk -v n="$rt" -v k="$K" 'BEGIN{printf "%.1f", n/k}')
    # sqlx's liveness check: a bare Sync message, on every checkout and every return to the pool.
    pings=$(grep -cE "^[0-9]+ +(sendto|write)\(($fds), \"S\\\\0\\\\0\\\\0\\\\4\", 5," "$WORK/strace" || true)
    pings=$(awk -v n="$pings" -v k="$K" 'BEGIN{printf "%.1f", n/k}')
  fi
  awk -v n="$name" -v s="$st" -v t="$tx" -v k="$K" -v r="$rt" -v p="$pings" \
    'BEGIN{printf "%-38s %10.1f %12.1f %10s %10s\n", n, s/k, t/k, p, r}'
  if [ "${SHOW:-0}" = 1 ]; then
    { grep -E 'LOG:  (execute [^:]*|statement): ' "$WORK/phase.log" || true; } | sed -E 's/.*LOG:  (execute [^:]*|statement): //' \
      | cut -c1-110 | sort | uniq -c | sed 's/^/      /'
  fi
}

# Setup outside the measured phases (K of each thing a phase consumes).
for i in $(seq 1 "$K"); do
  cc -d resource=urn:bench:opaque | field access_token > "$WORK/revoke_opaque$i"
  cc -d scope=api:read | field access_token > "$WORK/revoke_jwt$i"
done
JWT=$(cc -d scope=api:read | field access_token)
OPAQUE=$(cc -d resource=urn:bench:opaque | field access_token)
# Warm-up: every kind once (prepared statements cached on the pool's connections).
for _ in 1 2 3; do
  cc -d scope=api:read >/dev/null; cc -d resource=urn:bench:opaque >/dev/null
  curl -sf -u "bench-client:$SECRET" -d token="$JWT" "$T/oauth2/v1/introspect" >/dev/null
  curl -sf -u "bench-client:$SECRET" -d token="$OPAQUE" "$T/oauth2/v1/introspect" >/dev/null
  curl -sf -d client_id=bench-tv -d scope=openid "$T/oauth2/v1/device" >/dev/null
done
w=warm; login_page $w; sign_in $w; exchange "$WORK/code$w" "$WORK/tok$w"; silent $w
web "$T/oauth2/v1/token" -d grant_type=refresh_token -d refresh_token="$(field refresh_token < "$WORK/tok$w")" >/dev/null
curl -sf -H "Authorization: Bearer $(field access_token < "$WORK/tok$w")" "$T/oauth2/v1/userinfo" >/dev/null
curl -sf -u "bench-client:$SECRET" -d token="$(cat "$WORK/revoke_opaque1")" "$T/oauth2/v1/revoke" >/dev/null
cc -d resource=urn:bench:opaque | field access_token > "$WORK/revoke_opaque1"
curl -s -o /dev/null -b "$WORK/jar$w" "$T/oauth2/v1/userlogout?id_token_hint=$(field id_token < "$WORK/tok$w")"

p_cc_jwt() { cc -d scope=api:read >/dev/null; }
p_cc_opaque() { cc -d resource=urn:bench:opaque >/dev/null; }
p_in_jwt() { curl -sf -u "bench-client:$SECRET" -d token="$JWT" "$T/oauth2/v1/introspect" | grep -q '"active":true'; }
p_in_opaque() { curl -sf -u "bench-client:$SECRET" -d token="$OPAQUE" "$T/oauth2/v1/introspect" | grep -q '"active":true'; }
p_rev_opaque() { curl -sf -u "bench-client:$SECRET" -d token="$(cat "$WORK/revoke_opaque$1")" "$T/oauth2/v1/revoke" >/dev/null; }
p_rev_jwt() { curl -sf -u "bench-client:$SECRET" -d token="$(cat "$WORK/revoke_jwt$1")" "$T/oauth2/v1/revoke" >/dev/null; }
p_login_page() { login_page "$1"; }
p_sign_in() { sign_in "$1"; }
p_silent() { silent "$1"; }
p_exchange() { exchange "$WORK/code$1" "$WORK/tok$1"; grep -q refresh_token "$WORK/tok$1"; }
p_refresh() {
  web "$T/oauth2/v1/token" -d grant_type=refresh_token -d refresh_token="$(field refresh_token < "$WORK/tok$1")" \
    | grep -q refresh_token
}
p_userinfo() { curl -sf -H "Authorization: Bearer $(field access_token < "$WORK/tok$1")" "$T/oauth2/v1/userinfo" >/dev/null; }
p_device() { curl -sf -d client_id=bench-tv -d scope=openid "$T/oauth2/v1/device" | grep -q device_code; }
p_logout() {
  local s
  s=$(curl -s -o /dev/null -w '%{http_code}' -b "$WORK/jar$1" "$T/oauth2/v1/userlogout?id_token_hint=$(field id_token < "$WORK/tok$1")")
  [ "$s" = 200 ] || [ "$s" = 303 ]
}
p_jwks() { curl -sf "$T/oauth2/v1/keys" >/dev/null; }
p_discovery() { curl -sf "$T/.well-known/openid-configuration" >/dev/null; }

measure "token: client_credentials, JWT" p_cc_jwt
measure "token: client_credentials, opaque" p_cc_opaque
measure "introspection, JWT" p_in_jwt
measure "introspection, opaque" p_in_opaque
measure "revocation, opaque" p_rev_opaque
measure "revocation, JWT" p_rev_jwt
measure "authorize, no session (sign-in page)" p_login_page
measure "sign-in POST (password, 303 + code)" p_sign_in
measure "token: authorization_code" p_exchange
measure "authorize, SSO session (prompt=none)" p_silent
measure "token: refresh_token (rotation)" p_refresh
measure "userinfo (JWT)" p_userinfo
measure "device authorization" p_device
measure "userlogout (id_token_hint)" p_logout
measure "JWKS" p_jwks
measure "discovery" p_discovery
