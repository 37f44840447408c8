-- wrk script: authorization-code exchange. CODES names a file of codes (bench/flat-authorize.lua),
-- each used once: every request takes the next one (a code redeemed twice is refused); running
-- out shows as non-2xx answers. BASIC authenticates the client, REDIRECT_URI is sent as is.
local basic = os.getenv("BASIC") or error("set BASIC")
local redirect = os.getenv("REDIRECT_URI") or error("set REDIRECT_URI")
local codes = {}
for line in io.lines(os.getenv("CODES") or error("set CODES")) do table.insert(codes, line) end
local i = 0

-- wrk calls request() once before the run to check the script (script_verify_request): that
-- call must not use up a code. flat.sh runs one thread (-t1).
local verified = false

request = function()
  local code
  if not verified then
    verified = true
    code = codes[1]
  else
    i = i + 1
    code = codes[i] or "exhausted"
  end
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. basic,
  }, "grant_type=authorization_code&code=" .. code .. "&redirect_uri=" .. redirect)
end
