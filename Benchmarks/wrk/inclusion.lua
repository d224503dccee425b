-- wrk script: GET inclusion proofs for random indices at a fixed tree size.
-- Usage: wrk -s inclusion.lua http://127.0.0.1:PORT -- TREE_SIZE
-- The requests are built in init(): formatting one per request in Lua costs wrk enough CPU, on
-- cores it shares with the server, to lower the measured rate. 200k distinct random indices per
-- thread is more than a 10 s run sends, so reads stay as random as before. There is no response()
-- callback for the same reason (it makes wrk hand every header and body to Lua); wrk counts
-- non-2xx answers itself and run.sh reports them.
local requests = {}
local n = 200000
local i = 0
function init(args)
  local size = tonumber(args[1])
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  for k = 1, n do
    requests[k] = wrk.format("GET", string.format("/v1/proof/inclusion?index=%d&tree_size=%d", math.random(0, size - 1), size))
  end
end
function request()
  i = i % n + 1
  return requests[i]
end
