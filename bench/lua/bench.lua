-- wrk script for Canopy's benchmark (bench/load.py writes the config and reads the summary).
--
-- BENCH_WRK_MODE picks what each request is:
--   static    one request over and over (wrk's fast path: no Lua per request or response)
--   list      the lines of a file, each "METHOD<TAB>PATH<TAB>TOKEN<TAB>BODY", split between the
--             threads; a thread that reaches its end starts again (counted as "wrapped")
--   batch     S2: partner batches of 100 events made from a user list (as fixtures.batch_body)
--   planting  S5: POST /v1/plantings, users round-robin, a fresh Idempotency-Key each
-- BENCH_WRK_CONFIG is a file of "key<TAB>value" lines. done() prints one line:
-- "BENCHJSON {...}" with the totals, latency percentiles (µs) and the threads' counters.

local mode = os.getenv("BENCH_WRK_MODE") or "static"
local config = {}
do
  local path = os.getenv("BENCH_WRK_CONFIG")
  if path then
    for line in io.lines(path) do
      local k, v = line:match("^([^\t]+)\t(.*)$")
      if k then config[k] = v end
    end
  end
end

local function lines_of(path)
  local out = {}
  for line in io.lines(path) do
    if line ~= "" then out[#out + 1] = line end
  end
  return out
end

local function split(line)
  local out = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do out[#out + 1] = field end
  return out
end

if mode == "static" then
  wrk.method = config.method or "GET"
  if config.token and config.token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. config.token
  end
  if config.body and config.body ~= "" then
    wrk.body = config.body
    wrk.headers["Content-Type"] = "application/json"
  end
end

-- main state: keep the threads to read their counters in done()
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

-- per-thread state (globals, so done() can thread:get them)
sent, wrapped, c2, c4, c5, cx, marks, minted, capped = 0, 0, 0, 0, 0, 0, 0, 0, 0

local nthreads = tonumber(config.threads or "1")
local mark = config.mark
local reqs, users, tokens, stamps

local function count(body, pattern)
  local _, n = body:gsub(pattern, "")
  return n
end

if mode ~= "static" then
  function init(args)
    if mode == "list" then
      reqs = {}
      local all = lines_of(config.file)
      local i = tid
      while i < #all do
        local f = split(all[i + 1])
        local headers = { ["Content-Type"] = "application/json" }
        if f[3] ~= "" then headers["Authorization"] = "Bearer " .. f[3] end
        reqs[#reqs + 1] = wrk.format(f[1], f[2], headers, f[4] ~= "" and f[4] or nil)
        i = i + nthreads
      end
    elseif mode == "batch" then
      users = lines_of(config.users)
      stamps = split(config.stamps)
    elseif mode == "planting" then
      tokens = lines_of(config.tokens)
    end
    if mark == "" then mark = nil end  -- a Lua pattern (bench/load.py lua_pattern)
  end

  local kinds = { "metro", "bus", "e_invoice" }

  local function batch_body(b)
    -- keep in step with bench/fixtures.py batch_slot / batch_body
    local slots = tonumber(config.slots_per_batch)
    local ncap = tonumber(config.capped_per_slot)
    local nfree = tonumber(config.free_per_slot)
    local days_n = tonumber(config.days)
    local n = #users
    local parts = {}
    local k = 0
    for s = b * slots, (b + 1) * slots - 1 do
      local user = users[(s % n) + 1]
      local days = math.floor(s / n) % days_n
      local kind = kinds[(math.floor(s / (n * days_n)) % 3) + 1]
      local at = stamps[days + 1]
      for j = 0, ncap + nfree - 1 do
        parts[#parts + 1] = string.format(
          '{"id":"%s-%d-%d","user_id":"%s","kind":"%s","occurred_at":"%s"}',
          config.tag, b, k, user, (j < ncap) and kind or config.free_kind, at)
        k = k + 1
      end
    end
    return '{"activities":[' .. table.concat(parts, ",") .. ']}'
  end

  function request()
    local r
    if mode == "list" then
      local i = (sent % #reqs) + 1
      if sent > 0 and i == 1 then wrapped = wrapped + 1 end
      r = reqs[i]
    elseif mode == "batch" then
      local b = tonumber(config.base) + tid + nthreads * sent
      r = wrk.format("POST", config.path, {
        ["Authorization"] = "Bearer " .. config.key,
        ["Content-Type"] = "application/json",
      }, batch_body(b))
    else -- planting
      local u = tokens[((tid + nthreads * sent) % #tokens) + 1]
      r = wrk.format("POST", config.path, {
        ["Authorization"] = "Bearer " .. u,
        ["Content-Type"] = "application/json",
        ["Idempotency-Key"] = config.tag .. "-" .. tid .. "-" .. sent,
      }, config.body)
    end
    sent = sent + 1
    return r
  end

  function response(status, headers, body)
    if status >= 200 and status < 300 then c2 = c2 + 1
    elseif status >= 400 and status < 500 then c4 = c4 + 1
    elseif status >= 500 then c5 = c5 + 1
    else cx = cx + 1 end
    if body then
      if mark then marks = marks + count(body, mark) end
      if mode == "batch" then
        minted = minted + count(body, config.minted_mark)
        capped = capped + count(body, config.capped_mark)
      end
    end
  end
end

function done(summary, latency, requests)
  local t = { sent = 0, sent_max = 0, wrapped = 0, c2 = 0, c4 = 0, c5 = 0, cx = 0, marks = 0,
              minted = 0, capped = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      if k ~= "sent_max" then t[k] = t[k] + (thread:get(k) or 0) end
    end
    t.sent_max = math.max(t.sent_max, thread:get("sent") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"threads":{"sent":%d,"sent_max":%d,"wrapped":%d,"c2":%d,"c4":%d,"c5":%d,"cx":%d,' ..
    '"marks":%d,"minted":%d,"capped":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    t.sent, t.sent_max, t.wrapped, t.c2, t.c4, t.c5, t.cx, t.marks, t.minted, t.capped))
end
