-- GET the URL's path with each user's access token in turn (BENCH_DATA: a lua file setting
-- `tokens`, a list of access tokens).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
dofile(os.getenv("BENCH_DATA"))
local n = 0
function request()
  n = n + 1
  local headers = {}
  if #tokens > 0 then
    headers["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]
  end
  return wrk.format("GET", nil, headers)
end
