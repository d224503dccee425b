-- wrk script: GET inclusion proofs for random indices at a fixed tree size.
-- Usage: wrk -s inclusion.lua http://127.0.0.1:PORT -- TREE_SIZE
-- Cheap per request (see publish.lua for why): the raw request is concatenated, no wrk.format,
-- no response() callback; wrk counts non-2xx answers itself.
local size, tail
function init(args)
  size = tonumber(args[1])
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  tail = "&tree_size=" .. size .. " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port .. "\r\n\r\n"
end
function request()
  return "GET /v1/proof/inclusion?index=" .. math.random(0, size - 1) .. tail
end
