-- wrk load script for the benchmark (python -m bench).
--
--   wrk -t2 -c64 -d15s --latency -s bench/load.lua URL -- <run_id> <mode> [name=value ...]
--
-- mode:
--   payments  POST a valid payment (card 4242424242424242) with a fresh Idempotency-Key
--   mixed     the same, cycling through the succeeded / declined / pending test cards
--   deposit   POST a bank-simulator deposit with a fresh reference
--   list      GET the URL as given (a listing page), with the merchant's token
--
-- Optional name=value arguments (the fair-use run drives two merchants at once):
--   token=<api key>     the merchant's bearer token (default first_merchant_mock_token)
--   expect=2xx,429      the statuses that are not errors, codes or classes (default 2xx)
--   delay=<ms>          each connection waits this long before its next request (default 0:
--                       as fast as answers come; delay() is only defined when it is set, so
--                       the unpaced runs go through wrk's usual path)
--
-- Every request is unique: "<run_id>-<thread>-<counter>". Each thread counts the requests it
-- built, the answers per status code and the answers with an unexpected status; done() sums
-- the threads and prints one line "WRK_JSON {...}" that bench/wrk.py parses (latencies in
-- microseconds).

local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_number", thread_count)
   table.insert(threads, thread)
end

-- Per-thread state (globals, so that done() can read them with thread:get).
sent = 0
statuses = {}
unexpected = 0

local prefix
local mode
local headers
local bodies = {}

local token = "first_merchant_mock_token"
local expected_codes = {}
local expected_classes = {}
local CARDS = {
   payments = {"4242424242424242"},
   mixed = {"4242424242424242", "4000000000000002", "4000000000009995"},
}

local function payment_body(card_number)
   return '{"card":{"number":"' .. card_number .. '","expiry_month":12,"expiry_year":2042,'
      .. '"cvv":"123","holder_name":"John Doe"},"amount":1000,"currency":"USD",'
      .. '"reference":"bench"}'
end

local DEPOSIT_BODY = '{"reference":"%s","card":{"number":"4242424242424242",'
   .. '"expiry":"12/2042","cvv":"123","holder_name":null},"amount":1000,"currency":"USD"}'

local function expect(list)
   for item in string.gmatch(list, "[^,]+") do
      local class = string.match(item, "^(%d)xx$")
      if class then
         expected_classes[tonumber(class)] = true
      else
         expected_codes[tonumber(item) or error("bad status in expect=" .. list)] = true
      end
   end
end

local function options(args)
   local given = {expect = "2xx"}
   for i = 3, #args do
      local name, value = string.match(args[i], "^(%w+)=(.*)$")
      if name == nil then
         error("expected name=value, got " .. args[i])
      end
      given[name] = value
   end
   token = given.token or token
   expect(given.expect)
   local pause = tonumber(given.delay or "0")
   if pause > 0 then
      function delay()
         return pause
      end
   end
end

function init(args)
   local run_id = args[1] or tostring(os.time())
   mode = args[2] or "payments"
   options(args)
   prefix = run_id .. "-" .. tostring(thread_number) .. "-"
   headers = {["Content-Type"] = "application/json"}
   if mode == "deposit" then
      return
   end
   headers["Authorization"] = "Bearer " .. token
   if mode == "list" then
      return
   end
   local cards = CARDS[mode]
   if cards == nil then
      error("unknown mode " .. mode)
   end
   for i, number in ipairs(cards) do
      bodies[i] = payment_body(number)
   end
end

function request()
   sent = sent + 1
   local unique = prefix .. sent
   if mode == "deposit" then
      headers["Idempotency-Key"] = nil
      return wrk.format("POST", nil, headers, string.format(DEPOSIT_BODY, unique))
   end
   if mode == "list" then
      return wrk.format("GET", nil, headers)
   end
   headers["Idempotency-Key"] = unique
   return wrk.format("POST", nil, headers, bodies[(sent % #bodies) + 1])
end

function response(status, _headers, _body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
   if not (expected_codes[status] or expected_classes[math.floor(status / 100)]) then
      unexpected = unexpected + 1
   end
end

local function encode(value)
   local kind = type(value)
   if kind == "table" then
      local parts = {}
      for k, v in pairs(value) do
         table.insert(parts, string.format("%q:%s", tostring(k), encode(v)))
      end
      return "{" .. table.concat(parts, ",") .. "}"
   elseif kind == "string" then
      return string.format("%q", value)
   elseif kind == "number" then
      return string.format("%.17g", value)
   end
   return tostring(value)
end

function done(summary, latency, _requests)
   local total_sent = 0
   local total_unexpected = 0
   local total_statuses = {}
   for _, thread in ipairs(threads) do
      total_sent = total_sent + (thread:get("sent") or 0)
      total_unexpected = total_unexpected + (thread:get("unexpected") or 0)
      for code, count in pairs(thread:get("statuses") or {}) do
         total_statuses[code] = (total_statuses[code] or 0) + count
      end
   end
   local percentiles = {}
   for _, p in ipairs({50, 75, 90, 99, 99.9}) do
      percentiles[tostring(p)] = latency:percentile(p)
   end
   local result = {
      duration_us = summary.duration,
      responses = summary.requests,
      bytes = summary.bytes,
      errors = summary.errors,
      sent = total_sent,
      unexpected = total_unexpected,
      statuses = total_statuses,
      latency_us = {
         min = latency.min,
         max = latency.max,
         mean = latency.mean,
         stdev = latency.stdev,
         percentiles = percentiles,
      },
   }
   io.write("WRK_JSON " .. encode(result) .. "\n")
end
