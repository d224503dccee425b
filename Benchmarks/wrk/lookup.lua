-- wrk script: GET /v1/keys/<identity> for random identities from a list (one a line), '@' sent as
-- %40. Usage: wrk -s lookup.lua http://127.0.0.1:PORT -- FILE
-- The list is `keyglass-bench prepare`'s PREFIX-lookups.txt: identities with multi-entry histories,
-- so every answer carries several entries, each with its inclusion proof. init() reads the list
-- (10,000 lines take a few ms; see publish.lua on why init() must be quick) and builds each request
-- once; request() only picks one. No response() callback; wrk counts non-2xx answers itself.
local reqs = {}
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  local tail = " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port .. "\r\n\r\n"
  for line in io.lines(args[1]) do
    if #line > 0 then
      local id = line:gsub("@", "%%40")
      reqs[#reqs + 1] = "GET /v1/keys/" .. id .. tail
    end
  end
  assert(#reqs > 0, "lookup.lua: no identities in " .. args[1])
end

function request()
  return reqs[math.random(1, #reqs)]
end
