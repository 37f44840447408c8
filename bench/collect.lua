-- wrk script: POST client_credentials (BODY, HTTP Basic BASIC) and append the access_token of each
-- answer, one a line, to OUT, up to MAX (default 20000) tokens a run. bench/run.sh gives them to
-- bench/introspect-many.lua. Run it with -t1 (one thread, one file).
local basic = os.getenv("BASIC") or error("set BASIC")
local out = io.open(os.getenv("OUT") or error("set OUT"), "a")
out:setvbuf("line")   -- whole lines only, whenever wrk stops
local max = tonumber(os.getenv("MAX") or "20000")
local n = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic
wrk.body = os.getenv("BODY") or error("set BODY")

response = function(status, headers, body)
  if n >= max or status ~= 200 then return end
  local token = string.match(body, '"access_token":"([^"]+)"')
  if token then
    out:write(token, "\n")
    n = n + 1
    if n == max then out:close() end
  end
end
