-- wrk script for bench/soak: a fixed mix of requests, chosen per request.
--   70 %  GET /      (13 bytes)
--   20 %  GET /big   (64 KiB)
--   10 %  POST /echo (16 KiB body, echoed back)
-- Any response other than 200, or a body that is not one of the three
-- expected ones (checked by size and first byte: responses come back in
-- any order across connections), counts in "bad", printed at the end.
local small, big, post
local sizes = {["H"] = 13, ["x"] = 65536, ["p"] = 16384}
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   -- here, not at load time: wrk.format takes the Host header from wrk.host
   small = wrk.format("GET", "/")
   big = wrk.format("GET", "/big")
   post = wrk.format("POST", "/echo", {["Content-Type"] = "application/octet-stream"},
                     string.rep("p", 16384))
   bad = 0
   n = 0
end

function request()
   n = n + 1
   local r = n % 10
   if r < 7 then return small
   elseif r < 9 then return big
   else return post end
end

function response(status, headers, body)
   if status ~= 200 or sizes[body:sub(1, 1)] ~= #body then bad = bad + 1 end
end

function done(summary, latency, requests)
   local b = 0
   for _, t in ipairs(threads) do b = b + t:get("bad") end
   io.write(string.format("SOAK bad=%d\n", b))
end
