-- Replays the requests of a file written by bench/load.py, each wrk thread taking every
-- n-th one so no two threads send the same request.
--
--   wrk ... -s bench/replay.lua URL -- FILE THREADS MODE [SKIP]
--
-- MODE "cycle" starts again at the first request when the file is used up; "once" sends each
-- request at most once (distinct webhook events must never turn into duplicates), then sends
-- only the fallback request below and stops the thread, and reports itself as exhausted.
-- SKIP requests of the file are left out first (an earlier run of the same file sent them).
-- done() prints one line, "BENCHJSON {...}", that bench/load.py reads, with the latency
-- distribution as 1,000 evenly spaced quantiles so that runs can be merged.

local QUANTILES = 1000
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local requests = {}
local index = 0
local once = false
local fallback = nil
statuses = {}
exhausted = false

local function read_requests(path, stride, offset)
  local file = assert(io.open(path, "rb"))
  local position = 0
  while true do
    local line = file:read("*l")
    if not line then break end
    local method, target, length, header_count = line:match("^(%S+) (%S+) (%d+) (%d+)$")
    assert(method, "bad request line in " .. path .. ": " .. line)
    local headers = {}
    for _ = 1, tonumber(header_count) do
      local name, value = file:read("*l"):match("^([^:]+): (.*)$")
      headers[name] = value
    end
    local body = nil
    if tonumber(length) > 0 then body = file:read(tonumber(length)) end
    if position % stride == offset then
      table.insert(requests, wrk.format(method, target, headers, body))
    end
    position = position + 1
  end
  file:close()
end

function init(args)
  local stride = tonumber(args[2] or "1")
  read_requests(args[1], stride, id or 0)
  assert(#requests > 0, "no requests for this thread in " .. args[1])
  once = args[3] == "once"
  index = tonumber(args[4] or "0")
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
  local merged, any_exhausted = {}, false
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + count
    end
    any_exhausted = any_exhausted or thread:get("exhausted")
  end
  local parts = {}
  for status, count in pairs(merged) do
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
    '"status":%d,"timeout":%d},"latency_quantiles_us":[%s],"latency_max_us":%d,' ..
    '"statuses":{%s},"exhausted":%s}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, table.concat(quantiles, ","), latency.max,
    table.concat(parts, ","), tostring(any_exhausted)))
end
