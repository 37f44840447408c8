#!/usr/bin/env python3
"""The client of bench/instructions.sh: K requests of each kind, one at a time on one kept-alive
connection, with the callgrind counters of the server zeroed after a warm-up of each kind and
dumped after its K requests.

    instructions.py PORT PID K

Prints one line a kind: `kind requests status-counts`. A kind whose answers are not all of the
expected status stops the script with an error (a count of failing requests measures nothing).
"""
import base64
import http.client
import json
import os
import re
import subprocess
import sys
import urllib.parse

PORT, PID, K = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
WARM_UP = 5
SECRET = b"bench-secret-0123456789abcdef0123456789abcdef"
URLENCODED = "application/x-www-form-urlencoded"


def basic(client):
    return "Basic " + base64.b64encode(client + b":" + SECRET).decode()


FORM = {"Content-Type": URLENCODED, "Authorization": basic(b"bench-client")}
WEB = {"Content-Type": URLENCODED, "Authorization": basic(b"bench-web")}
REDIRECT = "http://127.0.0.1:8181/cb"
AUTHZ = ("/oauth2/v1/authorize?response_type=code&client_id=bench-web&redirect_uri="
         + urllib.parse.quote(REDIRECT, safe="")
         + "&scope=openid%20profile%20offline_access%20api%3Aread")
conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=300)


def exchange(method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.headers, resp.read()


def callgrind(*args):
    subprocess.run(["callgrind_control", *args, PID], check=True, capture_output=True)


def phase(name, requests, expect=200):
    """requests: a list of (method, path, body, headers), or a function of the previous answer's
    body (None at first) giving the next one."""
    following = requests if callable(requests) else (lambda i, _body: requests[i])
    body, statuses = None, {}
    for i in range(WARM_UP + K):
        if i == WARM_UP:
            callgrind("--zero")
        status, _, body = exchange(*following(i, body))
        if i >= WARM_UP:
            statuses[status] = statuses.get(status, 0) + 1
    callgrind(f"--dump={name}")
    print(f"{name} {K} {json.dumps(statuses)}", flush=True)
    if set(statuses) != {expect}:
        sys.exit(f"{name}: expected only {expect}, got {statuses}")


def post(path, headers, **fields):
    return ("POST", path, urllib.parse.urlencode(fields), headers)


def access_token(**fields):
    status, _, data = exchange(*post("/oauth2/v1/token", FORM, **fields))
    if status != 200:
        sys.exit(f"token request failed: {status} {data[:200]!r}")
    return json.loads(data)["access_token"]


n = WARM_UP + K
CC_JWT = dict(grant_type="client_credentials", scope="api:read")
CC_OPAQUE = dict(grant_type="client_credentials", resource="urn:bench:opaque")
INTROSPECT = "/oauth2/v1/introspect"
phase("healthz", [("GET", "/healthz", None, None)] * n)
phase("cc-jwt", [post("/oauth2/v1/token", FORM, **CC_JWT)] * n)
phase("cc-opaque", [post("/oauth2/v1/token", FORM, **CC_OPAQUE)] * n)
phase("introspect-jwt", [post(INTROSPECT, FORM, token=access_token(**CC_JWT))] * n)
phase("introspect-opaque", [post(INTROSPECT, FORM, token=access_token(**CC_OPAQUE))] * n)
# Distinct JWTs: each one verified (the cache of verified JWTs has not seen them).
phase("introspect-distinct-jwt",
      [post(INTROSPECT, FORM, token=access_token(**CC_JWT)) for _ in range(n)])
phase("revoke-opaque",
      [post("/oauth2/v1/revoke", FORM, token=access_token(**CC_OPAQUE)) for _ in range(n)])

# A browser: the sign-in page, one password sign-in (its cookies are the SSO session), then
# silent authorizations (303 with a code), code exchanges, userinfo and refresh rotations.
cookies = {}


def keep_cookies(headers):
    for value in headers.get_all("Set-Cookie") or []:
        name, _, rest = value.partition("=")
        cookies[name] = rest.split(";", 1)[0]
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def code_of(headers):
    query = urllib.parse.urlparse(headers.get("Location", "")).query
    return urllib.parse.parse_qs(query).get("code", [None])[0]


_, headers, page = exchange("GET", AUTHZ)
jar = keep_cookies(headers)
fields = dict(re.findall(r'name="(request|csrf)" value="([^"]*)"', page.decode()))
status, headers, _ = exchange(*post("/signin", {"Content-Type": URLENCODED, "Cookie": jar},
                                    username="bench-user", password="bench-password", **fields))
jar = keep_cookies(headers)
if status != 303 or not code_of(headers):
    sys.exit(f"sign-in failed: {status}")
SILENT = ("GET", AUTHZ + "&prompt=none", None, {"Cookie": jar})
phase("authorize-sso", [SILENT] * n, expect=303)


def sign_in_pair():
    """A browser without cookies: the sign-in page (a pending request and a CSRF cookie), then
    its POST (argon2, the session, the code). Returns the POST's status."""
    _, headers, page = exchange("GET", AUTHZ)
    csrf_cookie = (headers.get("Set-Cookie") or "").split(";", 1)[0]
    fields = dict(re.findall(r'name="(request|csrf)" value="([^"]*)"', page.decode()))
    status, _, _ = exchange(*post("/signin", {"Content-Type": URLENCODED, "Cookie": csrf_cookie},
                                  username="bench-user", password="bench-password", **fields))
    return status


# Password sign-ins, counted a pair (page and POST) at a time, argon2 included (under callgrind
# one takes about a second, hence SIGNIN_K, default 20; TOP shows argon2's share).
SIGNIN_K = int(os.environ.get("SIGNIN_K", "20"))
for _ in range(WARM_UP):
    sign_in_pair()
callgrind("--zero")
statuses = {}
for _ in range(SIGNIN_K):
    s = sign_in_pair()
    statuses[s] = statuses.get(s, 0) + 1
callgrind("--dump=signin-pair")
print(f"signin-pair {SIGNIN_K} {json.dumps(statuses)}", flush=True)
if set(statuses) != {303}:
    sys.exit(f"signin-pair: expected only 303, got {statuses}")


def redeem(code):
    return post("/oauth2/v1/token", WEB, grant_type="authorization_code", code=code,
                redirect_uri=REDIRECT)


def silent_code():
    status, headers, _ = exchange(*SILENT)
    return code_of(headers)


phase("code-exchange", [redeem(silent_code()) for _ in range(n)])
status, _, answer = exchange(*redeem(silent_code()))
grant = json.loads(answer)
phase("userinfo", [("GET", "/oauth2/v1/userinfo", None,
                    {"Authorization": "Bearer " + grant["access_token"]})] * n)


def rotate(_i, previous):
    """Each refresh sends the refresh token the previous answer gave (the first: the grant's)."""
    token = json.loads(previous)["refresh_token"] if previous else grant["refresh_token"]
    return post("/oauth2/v1/token", WEB, grant_type="refresh_token", refresh_token=token)


phase("refresh", rotate)
