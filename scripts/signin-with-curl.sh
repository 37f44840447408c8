#!/usr/bin/env bash
# A full browser sign-in done with curl against the quickstart server (config/example.toml):
# authorize -> sign in as alice -> consent -> code -> tokens -> userinfo -> refresh.
# The cookie jar plays the browser; nothing listens on the redirect URI, we only read it.
set -euo pipefail
ISSUER=${ISSUER:-http://127.0.0.1:8080}
CLIENT=demo-web
SECRET=demo-web-secret-0123456789abcdefghijklmnop
REDIRECT=http://127.0.0.1:9000/callback
JAR=$(mktemp); trap 'rm -f "$JAR"' EXIT
b64url() { basenc --base64url | tr -d '=\n'; }

# PKCE (RFC 7636): a random verifier and its S256 challenge.
VERIFIER=$(head -c 32 /dev/urandom | b64url)
CHALLENGE=$(printf %s "$VERIFIER" | openssl dgst -sha256 -binary | b64url)

# 1. The authorization request: the login page, with the form's request id and CSRF token.
PAGE=$(curl -sf -c "$JAR" -b "$JAR" -G "$ISSUER/oauth2/v1/authorize" \
  --data-urlencode response_type=code --data-urlencode client_id=$CLIENT \
  --data-urlencode redirect_uri=$REDIRECT --data-urlencode "scope=openid profile email offline_access" \
  --data-urlencode state=xyz --data-urlencode code_challenge="$CHALLENGE" \
  --data-urlencode code_challenge_method=S256)
field() { sed -n "s/.*name=\"$1\" value=\"\([^\"]*\)\".*/\1/p" | head -n 1; }
REQUEST=$(printf %s "$PAGE" | field request)
CSRF=$(printf %s "$PAGE" | field csrf)

# 2. Sign in: 303 to the consent page.
CONSENT=$(curl -s -c "$JAR" -b "$JAR" -o /dev/null -w '%{redirect_url}' "$ISSUER/signin" \
  -d request="$REQUEST" -d csrf="$CSRF" -d username=alice -d password=alice-password)
echo "after sign-in: $CONSENT"

# 3. Approve (the ticked scopes are sent back): 303 to the client with code, state and iss.
BACK=$(curl -s -c "$JAR" -b "$JAR" -o /dev/null -w '%{redirect_url}' "$ISSUER/consent" \
  -d request="$REQUEST" -d csrf="$CSRF" -d decision=approve \
  -d scope=profile -d scope=email -d scope=offline_access)
echo "back to the client: $BACK"
CODE=$(printf %s "$BACK" | sed -n 's/.*[?&]code=\([^&]*\).*/\1/p')

# 4. The client exchanges the code (HTTP Basic, the same redirect_uri, the PKCE verifier).
TOKENS=$(curl -sf -u "$CLIENT:$SECRET" "$ISSUER/oauth2/v1/token" -d grant_type=authorization_code \
  --data-urlencode code="$CODE" --data-urlencode redirect_uri=$REDIRECT --data-urlencode code_verifier="$VERIFIER")
echo "tokens: $TOKENS"
json() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

# 5. Userinfo with the access token; then a refresh (the refresh token rotates).
curl -sf -H "Authorization: Bearer $(printf %s "$TOKENS" | json access_token)" "$ISSUER/oauth2/v1/userinfo"; echo
curl -sf -u "$CLIENT:$SECRET" "$ISSUER/oauth2/v1/token" -d grant_type=refresh_token \
  --data-urlencode refresh_token="$(printf %s "$TOKENS" | json refresh_token)"; echo
