#!/usr/bin/env bash
# Walks the JWT flows of RFC 7523 against the quickstart server with curl and openssl alone:
#  1. the demo-signer client authenticates with private_key_jwt (a JWT it signs) and gets a
#     client_credentials token;
#  2. it trades an assertion about alice, signed by the demo identity provider, for an access
#     token (the JWT bearer grant).
# Usage: scripts/jwt-assertions.sh [ISSUER]   (default http://127.0.0.1:8080)
set -euo pipefail
issuer=${1:-http://127.0.0.1:8080}
token_endpoint="$issuer/oauth2/v1/token"
keys="$(dirname "$0")/../config/demo-keys"

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
# sign KEY_PEM KID CLAIMS_JSON: a compact RS256 JWS.
sign() {
  local header payload
  header=$(printf '{"alg":"RS256","typ":"JWT","kid":"%s"}' "$2" | b64url)
  payload=$(printf '%s' "$3" | b64url)
  printf '%s.%s.%s' "$header" "$payload" \
    "$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$1" -binary | b64url)"
}
now=$(date +%s)
jti() { openssl rand -hex 16; }

client_assertion() {
  sign "$keys/demo-signer.key.pem" demo-signer-1 \
    "$(printf '{"iss":"demo-signer","sub":"demo-signer","aud":"%s","iat":%d,"exp":%d,"jti":"%s"}' \
      "$issuer" "$now" $((now + 60)) "$(jti)")"
}

echo "# 1. client_credentials, authenticated with private_key_jwt"
curl -s "$token_endpoint" -d grant_type=client_credentials -d scope=orders.read \
  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  -d client_assertion="$(client_assertion)"
echo

echo "# 2. JWT bearer grant: an assertion of https://idp.example.com about alice"
user_assertion=$(sign "$keys/demo-idp.key.pem" demo-idp-1 \
  "$(printf '{"iss":"https://idp.example.com","sub":"alice","aud":"%s","iat":%d,"exp":%d,"jti":"%s"}' \
    "$token_endpoint" "$now" $((now + 120)) "$(jti)")")
curl -s "$token_endpoint" -d grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer \
  -d assertion="$user_assertion" -d scope=orders.read \
  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  -d client_assertion="$(client_assertion)"
echo

echo "# 3. the same user assertion again: refused as a replay"
curl -s "$token_endpoint" -d grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer \
  -d assertion="$user_assertion" -d scope=orders.read \
  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  -d client_assertion="$(client_assertion)"
echo
