-- wrk script for scripts/load-test-service: GET <prefix><id> with id drawn uniformly from
-- 1..max (the seeded users), and one machine-readable summary line at the end.
-- Usage: wrk -s random_ids.lua URL -- /users/ 500
-- With a max of 0 the path is the prefix alone (`-- /health 0`: the HTTP ceiling).

local prefix = "/users/"
local max_id = 500

function init(args)
  prefix = args[1] or prefix
  max_id = tonumber(args[2]) or max_id
  -- Each wrk thread runs its own Lua state: seed each differently.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  if max_id == 0 then
    return wrk.format("GET", prefix)
  end
  return wrk.format("GET", prefix .. math.random(1, max_id))
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.1f p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
