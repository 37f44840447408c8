-- wrk script: password sign-ins through the sign-in page, as a browser does them. A connection
-- either opens the sign-in page (GET AUTHZ without a session: 200, a form with hidden "request"
-- and "csrf" fields and the CSRF cookie) or, when a page is waiting, posts it (POST /signin with
-- that cookie, USERNAME and PASSWORD: 303 to the client). done() prints "bench: N sign-ins/s".
local authz = os.getenv("AUTHZ") or error("set AUTHZ")
local signin_path = os.getenv("SIGNIN_PATH") or "/signin"
local username = os.getenv("USERNAME_") or "bench-user"
local password = os.getenv("PASSWORD_") or "bench-password"

local pages = {}
signins = 0    -- globals: read by done() through thread:get
failed = 0

local threads = {}
function setup(thread) table.insert(threads, thread) end

local function urlencode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

request = function()
  local p = table.remove(pages, 1)
  if p then
    return wrk.format("POST", signin_path, {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Cookie"] = p.cookie,
    }, "request=" .. urlencode(p.request) .. "&csrf=" .. urlencode(p.csrf)
      .. "&username=" .. urlencode(username) .. "&password=" .. urlencode(password))
  end
  return wrk.format("GET", authz)
end

response = function(status, headers, body)
  if status == 303 then
    signins = signins + 1
    return
  end
  local request_id = string.match(body, 'name="request" value="([^"]*)"')
  local csrf = string.match(body, 'name="csrf" value="([^"]*)"')
  local set = headers["set-cookie"] or headers["Set-Cookie"]
  if status == 200 and request_id and csrf and set then
    table.insert(pages, { request = request_id, csrf = csrf, cookie = string.match(set, "^[^;]+") })
  else
    failed = failed + 1
  end
end

done = function(summary, latency, requests)
  local n, f = 0, 0
  for _, t in ipairs(threads) do
    n = n + (t:get("signins") or 0)
    f = f + (t:get("failed") or 0)
  end
  io.write(string.format("bench: %.1f sign-ins/s (%d sign-ins, %d failed answers)\n",
    n / (summary.duration / 1e6), n, f))
end
