-- wrk load script for the benchmark (python -m bench).
--
--   wrk -t2 -c64 -d15s --latency -s bench/load.lua URL -- <run_id> <mode>
--
-- mode:
--   payments  POST a valid payment (card 4242424242424242) with a fresh Idempotency-Key
--   mixed     the same, cycling through the succeeded / declined / pending test cards
--   deposit   POST a bank-simulator deposit with a fresh reference
--
-- Every request is unique: "<run_id>-<thread>-<counter>". Each thread counts the requests it
-- built and the answers per status code; done() sums the threads and prints one line
-- "WRK_JSON {...}" that bench/wrk.py parses (latencies in microseconds).

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

local prefix
local mode
local headers
local bodies = {}

local TOKEN = "first_merchant_mock_token"
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

function init(args)
   local run_id = args[1] or tostring(os.time())
   mode = args[2] or "payments"
   prefix = run_id .. "-" .. tostring(thread_number) .. "-"
   headers = {["Content-Type"] = "application/json"}
   if mode == "deposit" then
      return
   end
   local cards = CARDS[mode]
   if cards == nil then
      error("unknown mode " .. mode)
   end
   headers["Authorization"] = "Bearer " .. TOKEN
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
   headers["Idempotency-Key"] = unique
   return wrk.format("POST", nil, headers, bodies[(sent % #bodies) + 1])
end

function response(status, _headers, _body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
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
   local total_statuses = {}
   for _, thread in ipairs(threads) do
      total_sent = total_sent + (thread:get("sent") or 0)
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
