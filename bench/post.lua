-- wrk script: POST a form body (BODY) with HTTP Basic (BASIC = base64 of "client_id:client_secret").
local basic = os.getenv("BASIC") or error("set BASIC")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic
wrk.body = os.getenv("BODY") or error("set BODY")
