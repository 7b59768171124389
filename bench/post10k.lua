-- wrk script: POST a 10 KiB body (the "echo" cases)
wrk.method = "POST"
wrk.body = string.rep("x", 10240)
wrk.headers["Content-Type"] = "application/octet-stream"
