-- Replays the requests of a file written by bench/load.py, in order, on one wrk thread.
--
--   wrk -t1 ... -s bench/replay.lua URL -- FILE SKIP [once]
--
-- Starts at request SKIP (an earlier run of the same file sent those) and goes round the file
-- again at its end; with "once" it sends each request at most once (distinct webhook events
-- must never turn into duplicates), then stops and reports itself as exhausted.
-- done() prints one line, "BENCHJSON {...}", that bench/load.py reads, with the latency
-- distribution as 1,000 evenly spaced quantiles so that runs can be merged.

local QUANTILES = 1000
local requests = {}
local index = 0
local once = false
local fallback = nil
local thread = nil
statuses = {}
exhausted = false

function setup(t)
  thread = t
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  while true do
    local line = file:read("*l")
    if not line then break end
    local method, target, length, header_count = line:match("^(%S+) (%S+) (%d+) (%d+)$")
    assert(method, "bad request line in " .. args[1] .. ": " .. line)
    local headers = {}
    for _ = 1, tonumber(header_count) do
      local name, value = file:read("*l"):match("^([^:]+): (.*)$")
      headers[name] = value
    end
    local body = nil
    if tonumber(length) > 0 then body = file:read(tonumber(length)) end
    table.insert(requests, wrk.format(method, target, headers, body))
  end
  file:close()
  assert(#requests > 0, "no requests in " .. args[1])
  once = args[3] == "once"
  index = tonumber(args[2] or "0")
  if not once then index = index % #requests end
  fallback = wrk.format("GET", "/bench/floor")
end

function request()
  if index >= #requests then
    if once then
      exhausted = true
      wrk.thread:stop()
      return fallback
    end
    index = 0
  end
  index = index + 1
  return requests[index]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, _)
  local parts = {}
  for status, count in pairs(thread:get("statuses")) do
    table.insert(parts, string.format('"%d":%d', status, count))
  end
  local quantiles = {}
  if summary.requests > 0 then
    for k = 0, QUANTILES - 1 do
      table.insert(quantiles, string.format("%d", latency:percentile((k + 0.5) * 100 / QUANTILES)))
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_quantiles_us":[%s],"statuses":{%s},"exhausted":%s}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, table.concat(quantiles, ","), table.concat(parts, ","),
    tostring(thread:get("exhausted"))))
end
