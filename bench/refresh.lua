-- wrk script: refresh-token rotation. TOKENS holds one refresh token per connection; each
-- response's new refresh token goes back in the queue for the next request, so every chain
-- keeps rotating (a connection has one request in flight at a time).
local basic = os.getenv("BASIC") or error("set BASIC")
local queue = {}
for t in string.gmatch(os.getenv("TOKENS") or error("set TOKENS"), "%S+") do table.insert(queue, t) end

-- wrk calls request() once before the run to check the script (script_verify_request, on the
-- state of thread 0): that first call must not take a token. run.sh runs one thread (-t1).
local verified = false

request = function()
  local t
  if not verified then
    verified = true
    t = queue[1]
  else
    t = table.remove(queue, 1)
  end
  if t == nil then t = "exhausted" end
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. basic,
  }, "grant_type=refresh_token&refresh_token=" .. t)
end

response = function(status, headers, body)
  local t = string.match(body, '"refresh_token":"([^"]+)"')
  -- A failed refresh ends its chain; wrk counts it among the non-2xx responses.
  if t then table.insert(queue, t) end
end

