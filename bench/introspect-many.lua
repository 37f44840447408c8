-- wrk script: introspection of many distinct tokens (TOKENS: a file of tokens, one a line, from
-- bench/collect.lua), each request the next one, round and round, with HTTP Basic (BASIC). With
-- more tokens than the server's cache of verified JWTs holds (8,192), every JWT's signature is
-- checked again, and every opaque token is a row of its own: the cost of real traffic, where
-- bench/post.lua's one token measures the cached path.
local basic = os.getenv("BASIC") or error("set BASIC")
local tokens = {}
for line in io.lines(os.getenv("TOKENS") or error("set TOKENS")) do table.insert(tokens, line) end
if #tokens == 0 then error("no tokens in TOKENS") end
local i = 0
local headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = "Basic " .. basic,
}

request = function()
  i = i % #tokens + 1
  return wrk.format("POST", nil, headers, "token=" .. tokens[i])
end

-- Introspection answers 200 for an unknown or inactive token too ({"active":false}): count the
-- inactive answers, which must stay at 0.
inactive = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
response = function(status, headers, body)
  if status == 200 and not string.find(body, '"active":true', 1, true) then inactive = inactive + 1 end
end
done = function(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + (t:get("inactive") or 0) end
  io.write(string.format("bench: %d distinct tokens, %d inactive answers\n", #tokens, n))
end
