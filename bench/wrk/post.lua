-- POST to the URL's path with an empty JSON body (the bare app's /insert).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = "{}"
