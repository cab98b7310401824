-- wrk load generator for `tocsin run`: POST /v1/events with NDJSON bodies.
--
--   wrk -t1 -c4 -d30s --latency -s benches/load/post_events.lua \
--       http://127.0.0.1:18080/v1/events -- /tmp/tocsin-bench/mixed.ndjson 1000 1 0.25
--
-- Arguments after `--`:
--   1. an NDJSON file (benches/gen_events.py output) whose first 100,000
--      lines are used, in order and then again, as event templates;
--   2. events per request (default 1000);
--   3. wrk's thread count, -t (default 1);
--   4. milliseconds of event time per event (default 0.25: 40 times denser
--      than the generator's 10 ms, so per-key rates are 40x the replay
--      figures);
--   5. requests per second per connection (default 0: as fast as answers
--      come). With a rate, each connection waits 1000/rate ms after an
--      answer before its next request (wrk's delay()), so the offered load
--      is at most connections x rate x events per request.
--
-- Requests in flight at once span connections x events x ms_per_event of
-- event time; keep that under the daemon's max_delay (2 s) or events
-- arrive late (check tocsin_events_late_total): -c4 with 1000 events of
-- 0.25 ms is 1 s. Several wrk threads drift apart; use -t1.
--
-- Each request re-stamps its templates with numeric event times. Event
-- time starts one day before the wall clock (so that it never runs into
-- max_future however fast the daemon is) and request r of thread k takes
-- slot r*threads + k, so concurrent bodies are close in event time (well
-- within max_delay). The key distribution is the generator's: 100k users,
-- 10k HTTP clients, 1000 hosts, a stream of orders.

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
   nthreads = tonumber(args[3] or "1")
   ms_per_event = tonumber(args[4] or "0.25")
   local rate = tonumber(args[5] or "0")
   pause = rate > 0 and 1000 / rate or nil
   templates = {}
   local f = assert(io.open(path, "r"))
   for line in f:lines() do
      -- Markers: \1 for the time member (string or number), \2 after the
      -- prefix of order ids and session ids, which get the template cycle
      -- number so that an order or a session does not come back when the
      -- templates are reused (users, clients and hosts do come back).
      local t = line:gsub('"ts":"[^"]*"', '"ts":\1', 1):gsub('"ts":%d+', '"ts":\1', 1)
         :gsub('"o%-', '"o-\2', 1):gsub('"s%-', '"s-\2', 1)
      local pieces = {}
      local pos = 1
      while true do
         local i = t:find("[\1\2]", pos)
         if not i then
            table.insert(pieces, t:sub(pos))
            break
         end
         table.insert(pieces, t:sub(pos, i - 1))
         table.insert(pieces, t:byte(i)) -- 1 or 2
         pos = i + 1
      end
      table.insert(templates, pieces)
      if #templates >= 100000 then break end
   end
   f:close()
   base = (os.time() - 86400) * 1000
   r = 0
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/x-ndjson"
end

function delay()
   return pause or 0
end

function request()
   local slot = r * nthreads + id
   r = r + 1
   local first = slot * per
   local n = #templates
   local out = {}
   for i = 1, per do
      local k = first + i - 1
      local ts = string.format("%d", base + math.floor(k * ms_per_event))
      local cycle = string.format("%d-", math.floor(k / n))
      local pieces = templates[k % n + 1]
      for j = 1, #pieces do
         local p = pieces[j]
         if p == 1 then
            out[#out + 1] = ts
         elseif p == 2 then
            out[#out + 1] = cycle
         else
            out[#out + 1] = p
         end
      end
      out[#out + 1] = "\n"
   end
   return wrk.format(nil, nil, nil, table.concat(out))
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
