-- Scenario 16, gateway side: wrk script.  Every request is
-- POST /v1/resources/RESOURCE/waitlist:join (the URL wrk is given) with a
-- user id nobody used before, so each is a new join, not a double tap:
-- "g<run>-<thread>-<n>", run from the script's argument (wrk ... -- RUN),
-- thread numbered by setup(), n counted per thread.  The Authorization
-- header comes with -H.  done() prints the totals on one line and writes
-- the latency histogram (microseconds and count, one line per value) to
-- the file named by WRK_LATENCY_FILE, so that the runner can take
-- percentiles over several runs.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_no", threads)
end

local prefix
local n = 0

function init(args)
   prefix = '{"user_id":"g' .. (args[1] or "0") .. "-" .. thread_no .. "-"
end

function request()
   n = n + 1
   return wrk.format(nil, nil, nil, prefix .. n .. '"}')
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("bench: requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
   local path = os.getenv("WRK_LATENCY_FILE")
   if path then
      local f = assert(io.open(path, "w"))
      for i = 1, #latency do
         local v, c = latency(i)
         f:write(string.format("%d %d\n", v, c))
      end
      f:close()
   end
end
