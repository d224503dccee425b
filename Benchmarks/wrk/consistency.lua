-- wrk script: GET consistency proofs from random earlier checkpoint sizes to the tree's size.
-- Usage: wrk -s consistency.lua http://127.0.0.1:PORT -- TREE_SIZE STEP
-- Proofs are served only between sizes the log signed; a bulk-loaded log signed every multiple
-- of STEP (its batch size). Requests are built in init() (see inclusion.lua for why).
local requests = {}
local n = 200000
local i = 0
function init(args)
  local size = tonumber(args[1])
  local step = tonumber(args[2])
  local k = math.floor((size - 1) / step)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  for j = 1, n do
    requests[j] = wrk.format("GET", string.format("/v1/proof/consistency?from=%d&to=%d", step * math.random(1, k), size))
  end
end
function request()
  i = i % n + 1
  return requests[i]
end
