-- wrk script: GET inclusion proofs for random indices at a fixed tree size.
-- Usage: wrk -s inclusion.lua http://127.0.0.1:PORT -- TREE_SIZE
local size
function init(args)
  size = tonumber(args[1])
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  return wrk.format("GET", string.format("/v1/proof/inclusion?index=%d&tree_size=%d", math.random(0, size - 1), size))
end
function response(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. "\n") end
end
