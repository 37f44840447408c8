-- wrk script: GET with an optional Cookie (COOKIE) and Authorization (AUTH) header.
wrk.method = "GET"
if os.getenv("COOKIE") then wrk.headers["Cookie"] = os.getenv("COOKIE") end
if os.getenv("AUTH") then wrk.headers["Authorization"] = os.getenv("AUTH") end
