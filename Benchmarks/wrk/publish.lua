-- wrk script: POST /v1/keys, each request a fresh identity with a random x25519 key.
-- Usage: wrk -s publish.lua http://127.0.0.1:PORT -- TOKEN [REQUESTS_PER_THREAD]
-- The requests are built in init(), before the clock starts: building a random key per request in
-- Lua cost wrk a third of a core, taken from the server it shares the two cores with. Each thread
-- holds REQUESTS_PER_THREAD (default 300000) distinct publishes, more than a 10 s run sends; if a
-- run sends more, identities repeat, and those publishes are key rotations (still valid).
-- No response() callback (it makes wrk hand every body to Lua); wrk counts non-2xx answers.
local requests = {}
local n
local i = 0
local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function key32()
  -- 32 random bytes -> 44 base64 chars ending in "=". The 43rd char must encode only 4 bits + 2 zero bits.
  local t = {}
  for k = 1, 42 do
    local r = math.random(0, 63)
    t[k] = b64:sub(r + 1, r + 1)
  end
  local last = math.random(0, 15) * 4
  t[43] = b64:sub(last + 1, last + 1)
  t[44] = "="
  return table.concat(t)
end

function init(args)
  local token = args[1]
  n = tonumber(args[2] or "300000")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  local thread = math.random(1, 1000000000)
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  for k = 1, n do
    local id = string.format("wrk-%d-%d@example.test", thread, k)
    local body = '{"identity":"' .. id .. '","key_type":"x25519","public_key":"' .. key32() .. '"}'
    requests[k] = wrk.format("POST", "/v1/keys", headers, body)
  end
end

function request()
  i = i % n + 1
  return requests[i]
end
