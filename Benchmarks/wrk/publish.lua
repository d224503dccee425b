-- wrk script: POST /v1/keys, each request a fresh identity with an x25519 key.
-- Usage: wrk -s publish.lua http://127.0.0.1:PORT -- TOKEN
-- Cheap per request on purpose: wrk shares the two cores with the server, and it starts its first
-- thread before the others' init() has run, so init() must be quick too (requests a thread sends
-- before the clock starts still count). Keys come from a pool of 4096 random ones made in init();
-- identities are unique per request. The raw request is concatenated here rather than with
-- wrk.format, and there is no response() callback (it makes wrk hand every body to Lua); wrk
-- counts non-2xx answers itself.
local keys = {}
local head, prefix
local counter = 0
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
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  for k = 1, 4096 do keys[k] = key32() end
  head = "POST /v1/keys HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port ..
    "\r\nContent-Type: application/json\r\nAuthorization: Bearer " .. args[1] .. "\r\nContent-Length: "
  prefix = '{"identity":"wrk-' .. math.random(1, 1000000000) .. "-"
end

function request()
  counter = counter + 1
  local body = prefix .. counter .. '@example.test","key_type":"x25519","public_key":"' .. keys[counter % 4096 + 1] .. '"}'
  return head .. #body .. "\r\n\r\n" .. body
end
