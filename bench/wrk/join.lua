-- POST /v1/challenges/join with a distinct (user, challenge) pair per request: request n of
-- this run takes pair BENCH_OFFSET + n, user = pair mod #tokens, challenge = pair div #tokens.
-- Past the last pair it wraps round (a re-join answers 200 and is not counted).
-- Run with one wrk thread: the counter lives in the thread's lua state.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
dofile(os.getenv("BENCH_DATA"))
local n = tonumber(os.getenv("BENCH_OFFSET") or "0")
local pairs_total = #tokens * #codes
function request()
  local pair = n % pairs_total
  n = n + 1
  local token = tokens[(pair % #tokens) + 1]
  local code = codes[math.floor(pair / #tokens) + 1]
  return wrk.format("POST", "/v1/challenges/join", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, '{"invite_code":"' .. code .. '","timezone":"UTC"}')
end
