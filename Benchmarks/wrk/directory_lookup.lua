-- wrk script: GET /v2/lookup/<identity> of identities that exist (user<N>@bench.test, N < COUNT).
-- Usage: wrk -s directory_lookup.lua http://127.0.0.1:PORT -- COUNT LOOKUP_TOKEN
local count, headers
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  count = tonumber(args[1])
  headers = { ["Authorization"] = "Bearer " .. args[2] }
end
function request()
  return wrk.format("GET", "/v2/lookup/user" .. math.random(0, count - 1) .. "@bench.test", headers)
end
