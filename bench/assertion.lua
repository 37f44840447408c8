-- wrk script: client_credentials authenticated with private_key_jwt. ASSERTIONS names a file of
-- form bodies (bench/assertions.rs), one per request, each with its own jti: every request uses
-- the next one (a replay would be refused). Running out shows as non-2xx answers.
local bodies = {}
for line in io.lines(os.getenv("ASSERTIONS") or error("set ASSERTIONS")) do table.insert(bodies, line) end
local i = 0

-- wrk calls request() once before the run to check the script (script_verify_request): that
-- call must not use up a body. run.sh runs one thread (-t1).
local verified = false

request = function()
  local body
  if not verified then
    verified = true
    body = bodies[1]
  else
    i = i + 1
    body = bodies[i] or "exhausted"
  end
  return wrk.format("POST", nil, { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
