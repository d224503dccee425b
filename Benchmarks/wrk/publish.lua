-- wrk script: POST /v1/keys with a fresh random x25519 key and identity per request.
-- Usage: wrk -s publish.lua http://127.0.0.1:PORT -- TOKEN
local token
local counter = 0
local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function init(args)
  token = args[1]
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

local function key32()
  -- 32 random bytes -> 44 base64 chars ending in "=". The 43rd char must encode only 4 bits + 2 zero bits.
  local t = {}
  for i = 1, 42 do
    local r = math.random(0, 63)
    t[i] = b64:sub(r + 1, r + 1)
  end
  local last = math.random(0, 15) * 4
  t[43] = b64:sub(last + 1, last + 1)
  t[44] = "="
  return table.concat(t)
end

function request()
  counter = counter + 1
  local id = string.format("wrk-%d-%d@example.test", math.random(1, 1000000000), counter)
  local body = '{"identity":"' .. id .. '","key_type":"x25519","public_key":"' .. key32() .. '"}'
  return wrk.format("POST", "/v1/keys", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body .. "\n")
  end
end
