-- wrk script: POST /v1/keys from a file `keyglass-bench prepare` wrote, one request per line.
-- Usage: wrk -t T -s mix.lua http://127.0.0.1:PORT -- FILE TOKEN
-- Thread n (0-based) reads FILE.n, its own part, line by line while the run goes (a file handle,
-- not a table filled in init(): init() must be quick, see publish.lua). Lines are
--   "T <json>"  an operator publish: sent with "Authorization: Bearer TOKEN";
--   "S <json>"  an owner-signed rotation: sent without a token, as an owner's client would.
-- When a thread's part runs out it keeps sending its last rotation line (its last line if it had
-- none): that rotation is already in the log, so every repeat is answered 409 and wrk counts it as
-- a non-2xx error. Running out is never hidden; done() also says so. No response() callback (it
-- makes wrk hand every body to Lua); wrk counts non-2xx answers itself.
local threads = {}
local file, last, lastSigned, head, bearer
repeats = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  file = assert(io.open(args[1] .. "." .. id, "r"))
  head = "POST /v1/keys HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port .. "\r\nContent-Type: application/json\r\n"
  bearer = "Authorization: Bearer " .. args[2] .. "\r\n"
end

function request()
  local line = file:read("*l")
  if line then
    last = line
    if line:byte(1) == 83 then lastSigned = line end  -- 'S'
  else
    line = lastSigned or last
    repeats = repeats + 1
  end
  local body = line:sub(3)
  local auth = ""
  if line:byte(1) == 84 then auth = bearer end  -- 'T'
  return head .. auth .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local n = t:get("repeats")
    if n and n > 0 then
      io.write(string.format("mix.lua: thread %d ran out of lines and repeated a used rotation %d times (each a 409 error)\n", t:get("id"), n))
    end
  end
end
