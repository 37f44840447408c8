-- wrk script for bench/soak.sh: every endpoint in turn. Request kinds cycle through KINDS; a
-- kind that needs something not yet at hand (a code, a refresh token, a token to revoke) is
-- replaced by the one that makes it. What each answer brings is recognised from the answer
-- itself (a connection has one request in flight, but answers come back in any order):
--   303 with a code            -> the codes queue (exchanged with PKCE-less bench-web)
--   200 with a refresh_token   -> the refresh pool (rotated; revoked when the pool is large)
--   200 with an access_token   -> JWT or opaque queues (introspected, then revoked)
-- Counts by status class and by OAuth error code; done() prints them as "soak: ..." lines.
local cc_basic = "Basic " .. (os.getenv("CC_BASIC") or error("set CC_BASIC"))
local web_basic = "Basic " .. (os.getenv("WEB_BASIC") or error("set WEB_BASIC"))
local cookie = os.getenv("COOKIE") or error("set COOKIE")
local authz = os.getenv("AUTHZ") or error("set AUTHZ")
local redirect = os.getenv("REDIRECT_URI") or error("set REDIRECT_URI")

local KINDS = { "cc_jwt", "introspect_jwt", "authorize", "exchange", "cc_opaque",
  "introspect_opaque", "refresh", "userinfo", "revoke" }
local FORM = "application/x-www-form-urlencoded"

local i = 0
local codes, refresh, jwts, opaques = {}, {}, {}, {}
local user_access = nil

-- Globals: read by done() through thread:get.
sent = {}        -- requests per kind
status = {}      -- answers per status code
errors = {}      -- OAuth error codes seen in answers
s5xx = 0
bad = 0          -- answers neither 2xx nor 3xx

local threads = {}
function setup(thread) table.insert(threads, thread) end

local function urlencode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local function push(q, v, cap)
  table.insert(q, v)
  if #q > cap then table.remove(q, 1) end
end

local function post(path, auth, body)
  return wrk.format("POST", path, { ["Content-Type"] = FORM, ["Authorization"] = auth }, body)
end

local make = {
  cc_jwt = function() return post("/oauth2/v1/token", cc_basic, "grant_type=client_credentials&scope=api%3Aread") end,
  cc_opaque = function()
    return post("/oauth2/v1/token", cc_basic, "grant_type=client_credentials&resource=urn%3Abench%3Aopaque")
  end,
  introspect_jwt = function() return post("/oauth2/v1/introspect", cc_basic, "token=" .. jwts[#jwts]) end,
  introspect_opaque = function() return post("/oauth2/v1/introspect", cc_basic, "token=" .. opaques[#opaques]) end,
  authorize = function() return wrk.format("GET", authz, { ["Cookie"] = cookie }) end,
  exchange = function()
    return post("/oauth2/v1/token", web_basic, "grant_type=authorization_code&code=" .. table.remove(codes, 1)
      .. "&redirect_uri=" .. urlencode(redirect))
  end,
  refresh = function()
    return post("/oauth2/v1/token", web_basic, "grant_type=refresh_token&refresh_token=" .. table.remove(refresh, 1))
  end,
  userinfo = function()
    return wrk.format("GET", "/oauth2/v1/userinfo", { ["Authorization"] = "Bearer " .. user_access })
  end,
}

-- Revocation: a refresh token when the pool has grown, else a JWT or an opaque access token
-- (each revoked token leaves its queue).
local function revoke()
  if #refresh > 64 then
    return post("/oauth2/v1/revoke", web_basic,
      "token_type_hint=refresh_token&token=" .. table.remove(refresh, 1))
  elseif i % 2 == 0 and #jwts > 1 then
    return post("/oauth2/v1/revoke", cc_basic, "token=" .. table.remove(jwts, 1))
  elseif #opaques > 1 then
    return post("/oauth2/v1/revoke", cc_basic, "token=" .. table.remove(opaques, 1))
  end
  return nil
end

request = function()
  i = i + 1
  local k = KINDS[(i % #KINDS) + 1]
  if k == "exchange" and #codes == 0 then k = "authorize" end
  if k == "refresh" and #refresh == 0 then k = #codes > 0 and "exchange" or "authorize" end
  if k == "userinfo" and not user_access then k = "authorize" end
  if k == "introspect_jwt" and #jwts == 0 then k = "cc_jwt" end
  if k == "introspect_opaque" and #opaques == 0 then k = "cc_opaque" end
  local r
  if k == "revoke" then
    r = revoke()
    if not r then k = "cc_opaque" end
  end
  r = r or make[k]()
  sent[k] = (sent[k] or 0) + 1
  return r
end

response = function(st, headers, body)
  status[st] = (status[st] or 0) + 1
  if st >= 500 then s5xx = s5xx + 1 end
  if st >= 400 or st < 200 then
    bad = bad + 1
    local e = string.match(body, '"error":"([^"]+)"') or ("status " .. st)
    errors[e] = (errors[e] or 0) + 1
    return
  end
  if st == 303 then
    local loc = headers["location"] or headers["Location"] or ""
    local code = string.match(loc, "[?&]code=([^&]+)")
    if code then push(codes, code, 256) else
      local e = string.match(loc, "[?&]error=([^&]+)") or "303 without code"
      errors[e] = (errors[e] or 0) + 1
    end
    return
  end
  local access = string.match(body, '"access_token":"([^"]+)"')
  if not access then return end
  local rt = string.match(body, '"refresh_token":"([^"]+)"')
  if rt then
    push(refresh, rt, 1024)
    user_access = access
  elseif string.sub(access, 1, 3) == "eyJ" then
    push(jwts, access, 256)
  else
    push(opaques, access, 256)
  end
end

local function merge(into, t)
  for k, v in pairs(t or {}) do into[k] = (into[k] or 0) + v end
end

local function line(name, t)
  local keys = {}
  for k in pairs(t) do table.insert(keys, k) end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do table.insert(parts, tostring(k) .. "=" .. t[k]) end
  io.write("soak: " .. name .. " " .. table.concat(parts, " ") .. "\n")
end

done = function(summary, latency, requests)
  local sn, st, er, fives, nbad = {}, {}, {}, 0, 0
  for _, t in ipairs(threads) do
    merge(sn, t:get("sent"))
    merge(st, t:get("status"))
    merge(er, t:get("errors"))
    fives = fives + (t:get("s5xx") or 0)
    nbad = nbad + (t:get("bad") or 0)
  end
  line("sent", sn)
  line("status", st)
  line("errors", er)
  io.write(string.format("soak: 5xx %d\nsoak: non-2xx/3xx %d\n", fives, nbad))
end
