-- wrk script: GET consistency proofs from random earlier checkpoint sizes to the tree's size.
-- Usage: wrk -s consistency.lua http://127.0.0.1:PORT -- TREE_SIZE STEP
-- Proofs are served only between sizes the log signed; a bulk-loaded log signed every multiple
-- of STEP (its batch size). Cheap per request (see publish.lua).
local step, k, tail
function init(args)
  local size = tonumber(args[1])
  step = tonumber(args[2])
  k = math.floor((size - 1) / step)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  tail = "&to=" .. size .. " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port .. "\r\n\r\n"
end
function request()
  return "GET /v1/proof/consistency?from=" .. step * math.random(1, k) .. tail
end
