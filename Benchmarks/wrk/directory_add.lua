-- wrk script: POST /v2/changes, each request the operator's first device of a new identity.
-- Usage: wrk -s directory_add.lua http://127.0.0.1:PORT -- TOKEN KEYSFILE
-- KEYSFILE: valid Ed25519 public keys, base64, one per line (keyglass-bench device-keys), cycled;
-- device ids are random; identities are unique per request. Cheap per request, as publish.lua.
local keys = {}
local head, prefix
local counter = 0
local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function id16()
  -- 16 random bytes -> 24 base64 chars ending in "==": the 22nd char encodes 2 bits + 4 zero bits.
  local t = {}
  for k = 1, 21 do
    local r = math.random(0, 63)
    t[k] = b64:sub(r + 1, r + 1)
  end
  local last = math.random(0, 3) * 16
  t[22] = b64:sub(last + 1, last + 1)
  return table.concat(t) .. "=="
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  for line in io.lines(args[2]) do keys[#keys + 1] = line end
  head = "POST /v2/changes HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port ..
    "\r\nContent-Type: application/json\r\nAuthorization: Bearer " .. args[1] .. "\r\nContent-Length: "
  prefix = '{"identity":"wrk-' .. math.random(1, 1000000000) .. "-"
end

function request()
  counter = counter + 1
  local body = prefix .. counter .. '@example.test","kind":"add","device":{"id":"' .. id16() ..
    '","signing_key":"' .. keys[counter % #keys + 1] .. '"}}'
  return head .. #body .. "\r\n\r\n" .. body
end
