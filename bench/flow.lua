-- wrk script: the authorization-code flow with an SSO session, as complete flows. Each connection
-- either asks for a code (GET AUTHZ with the session cookie COOKIE: 303 with the code in its
-- Location) or, when a code is waiting, redeems it (POST TOKEN_PATH, HTTP Basic BASIC, the PKCE
-- VERIFIER of AUTHZ's code_challenge, REDIRECT_URI). A flow is complete when the token answer
-- (200) carries an access token and an ID token; done() prints "bench: N flows/s".
local cookie = os.getenv("COOKIE") or error("set COOKIE")
local basic = os.getenv("BASIC") or error("set BASIC")
local authz = os.getenv("AUTHZ") or error("set AUTHZ")
local verifier = os.getenv("VERIFIER") or error("set VERIFIER")
local redirect = os.getenv("REDIRECT_URI") or error("set REDIRECT_URI")
local token_path = os.getenv("TOKEN_PATH") or "/oauth2/v1/token"

local codes = {}
flows = 0      -- globals: read by done() through thread:get
failed = 0

local threads = {}
function setup(thread) table.insert(threads, thread) end

local function urlencode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

request = function()
  local code = table.remove(codes, 1)
  if code then
    return wrk.format("POST", token_path, {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Authorization"] = "Basic " .. basic,
    }, "grant_type=authorization_code&code=" .. code .. "&redirect_uri=" .. urlencode(redirect)
      .. "&code_verifier=" .. verifier)
  end
  return wrk.format("GET", authz, { ["Cookie"] = cookie })
end

response = function(status, headers, body)
  if status == 303 then
    local loc = headers["location"] or headers["Location"] or ""
    local code = string.match(loc, "[?&]code=([^&]+)")
    if code then table.insert(codes, code) else failed = failed + 1 end
  elseif status == 200 and string.find(body, '"id_token":"', 1, true)
      and string.find(body, '"access_token":"', 1, true) then
    flows = flows + 1
  else
    failed = failed + 1
  end
end

done = function(summary, latency, requests)
  local n, f = 0, 0
  for _, t in ipairs(threads) do
    n = n + (t:get("flows") or 0)
    f = f + (t:get("failed") or 0)
  end
  io.write(string.format("bench: %.1f flows/s (%d flows, %d failed answers)\n",
    n / (summary.duration / 1e6), n, f))
end
