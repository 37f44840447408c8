#!/usr/bin/env bash
# The device authorization grant (RFC 8628) done with curl against the quickstart server
# (config/example.toml): the device starts and polls; the person's side (the /device page, sign-in
# as alice, Allow) is played by a cookie jar instead of a browser.
set -euo pipefail
ISSUER=${ISSUER:-http://127.0.0.1:8080}
CLIENT=demo-tv
GRANT=urn:ietf:params:oauth:grant-type:device_code
JAR=$(mktemp); trap 'rm -f "$JAR"' EXIT
json() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }
field() { sed -n "s/.*name=\"$1\" value=\"\([^\"]*\)\".*/\1/p" | head -n 1; }
poll() { curl -s "$ISSUER/oauth2/v1/token" -d client_id=$CLIENT -d grant_type=$GRANT -d device_code="$DEVICE_CODE"; }

# 1. The device asks for codes (a public client: client_id alone).
START=$(curl -sf "$ISSUER/oauth2/v1/device" -d client_id=$CLIENT -d "scope=openid profile offline_access")
echo "device authorization: $START"
DEVICE_CODE=$(printf %s "$START" | json device_code)
USER_CODE=$(printf %s "$START" | json user_code)
INTERVAL=$(printf %s "$START" | json interval)

# 2. It polls: {"error":"authorization_pending",...} until the person decides.
echo "poll: $(poll)"

# 3. The person opens /device and types the code (any case, with or without the dash): 303 to
#    the confirmation of this request.
CSRF=$(curl -sf -c "$JAR" -b "$JAR" "$ISSUER/device" | field csrf)
NEXT=$(curl -s -c "$JAR" -b "$JAR" -o /dev/null -w '%{redirect_url}' "$ISSUER/device" \
  -d csrf="$CSRF" -d user_code="$USER_CODE")
echo "code accepted: $NEXT"

# 4. Not signed in: the sign-in page, which sends the person back to the confirmation.
REQUEST=$(curl -sf -c "$JAR" -b "$JAR" "$NEXT" | field request)
curl -s -c "$JAR" -b "$JAR" -o /dev/null -w 'after sign-in: %{redirect_url}\n' "$ISSUER/signin" \
  -d request="$REQUEST" -d csrf="$CSRF" -d username=alice -d password=alice-password

# 5. The confirmation names the client and the scopes; Allow.
curl -sf -c "$JAR" -b "$JAR" "$NEXT" | sed -n 's/.*<h1>\(.*\)<\/h1>.*/\1/p; s/.*<li>\(.*\)<\/li>.*/  - \1/p'
curl -sf -c "$JAR" -b "$JAR" "$ISSUER/device" -d request="$REQUEST" -d csrf="$CSRF" -d decision=approve \
  | sed -n 's/.*<h1>\(.*\)<\/h1>.*/\1/p'

# 6. The device's next poll (after the interval) gets the tokens; the device code then is spent.
sleep "$INTERVAL"
echo "poll: $(poll)"
echo "poll again: $(poll)"
