-- wrk script: silent authorization in an SSO session (COOKIE), as bench/get.lua, that also
-- appends the code of each redirect to the file CODES, for bench/flat-code.lua to exchange.
wrk.method = "GET"
wrk.headers["Cookie"] = os.getenv("COOKIE") or error("set COOKIE")
local out = io.open(os.getenv("CODES") or error("set CODES"), "a")
out:setvbuf("line")

response = function(status, headers, body)
  local location = headers["location"] or headers["Location"] or ""
  local code = string.match(location, "[?&]code=([^&]+)")
  if code then out:write(code, "\n") end
end
