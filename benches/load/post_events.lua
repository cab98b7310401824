-- wrk load generator for `tocsin run`: POST /v1/events with NDJSON bodies.
--
--   wrk -t2 -c4 -d30s --latency -s benches/load/post_events.lua \
--       http://127.0.0.1:18080/v1/events -- /tmp/tocsin-bench/mixed.ndjson 1000 2
--
-- Arguments after `--`: an NDJSON file whose first lines are the event
-- templates (benches/gen_events.py output), the events per request, and
-- wrk's thread count (-t).
-- Each request re-stamps the templates with fresh numeric event times:
-- 100 events per millisecond of event time, starting at the wall clock
-- when wrk starts, request r of thread k taking slot r*threads + k, so
-- that concurrent bodies are within a few ms of each other (well inside
-- max_delay) and event time stays close to the wall clock near 100k
-- events/s.

local counter = 0
local threads = {}

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local path = args[1] or "/tmp/tocsin-bench/mixed.ndjson"
   per = tonumber(args[2] or "1000")
   nthreads = tonumber(args[3] or "2") -- must equal wrk -t
   templates = {}
   local f = assert(io.open(path, "r"))
   for line in f:lines() do
      -- Replace the time member (string or number) by a marker.
      local t = line:gsub('"ts":"[^"]*"', '"ts":@TS@', 1):gsub('"ts":%d+', '"ts":@TS@', 1)
      local a, b = t:match("^(.*)@TS@(.*)$")
      table.insert(templates, {a, b})
      if #templates >= per then break end
   end
   f:close()
   base = os.time() * 1000
   r = 0
   parts = {}
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/x-ndjson"
end

function request()
   local slot = r * nthreads + id
   r = r + 1
   local t0 = base + slot * (per / 100)
   for i = 1, per do
      local tp = templates[i]
      parts[i] = tp[1] .. string.format("%d", t0 + math.floor((i - 1) / 100)) .. tp[2]
   end
   return wrk.format(nil, nil, nil, table.concat(parts, "\n") .. "\n")
end

function done(summary, latency, requests)
   local per = threads[1]:get("per")
   local s = summary.duration / 1e6
   local bad = summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout
   local ok = summary.requests - summary.errors.status
   io.write(string.format("requests: %d in %.2fs, non-2xx: %d, socket errors: %d\n",
      summary.requests, s, summary.errors.status, bad - summary.errors.status))
   io.write(string.format("accepted events/s (2xx requests x %d / duration): %.0f\n",
      per, ok * per / s))
   for _, p in ipairs({50, 90, 99, 99.9}) do
      io.write(string.format("ack latency p%g: %.2f ms\n", p, latency:percentile(p) / 1000))
   end
   io.write(string.format("ack latency max: %.2f ms\n", latency.max / 1000))
end
