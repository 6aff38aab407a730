-- POST /v1/challenges/join with a distinct (user, challenge) pair per request: request n of
-- this run takes pair p = (BENCH_OFFSET + n) * STRIDE mod #pairs, user = p mod #tokens,
-- challenge = p div #tokens. STRIDE is coprime with #pairs, so every pair comes once before
-- any repeats, and successive requests are spread over users and challenges as many people
-- joining many challenges are (in order, every request in flight joined one challenge).
-- Past the last pair it wraps round (a re-join answers 200 and is not counted).
-- Run with one wrk thread: the counter lives in the thread's lua state.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
dofile(os.getenv("BENCH_DATA"))
local n = tonumber(os.getenv("BENCH_OFFSET") or "0")
local pairs_total = #tokens * #codes
local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end
local stride = 7919
while gcd(stride, pairs_total) ~= 1 do stride = stride + 2 end
function request()
  local pair = (n * stride) % pairs_total
  n = n + 1
  local token = tokens[(pair % #tokens) + 1]
  local code = codes[math.floor(pair / #tokens) + 1]
  return wrk.format("POST", "/v1/challenges/join", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, '{"invite_code":"' .. code .. '","timezone":"UTC"}')
end
