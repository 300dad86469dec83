-- Recount each tenant's started jobs of a fair queue from its started registry, replacing
-- prosaas:fair:<q>:running. The counts are kept by claims, settles and recovery, but a tool that
-- removes started-registry entries on its own (Python RQ's cleanup, `rq` commands) does not
-- know them; without this a tenant's count could only grow, and a tenant cap would starve it.
-- The registry holds at most the jobs running now (workers' concurrency), so the walk is short.
--
-- ARGV[1] RQ prefix   ARGV[2] queue
-- Returns the number of started jobs found in lanes.
-- FIXED_ARGS: prefix, queue
local FIXED_ARGS = 2
local p, q = ARGV[1], ARGV[2]
local counts, order, total = {}, {}, 0
for _, member in ipairs(redis.call('ZRANGE', Key.started(p, q), 0, -1)) do
  local id = string.match(member, '^[^:]+')
  local h = redis.call('HMGET', Key.job(p, id), 'lane', 'status')
  if h[1] and h[1] ~= '' and h[2] == 'started' then
    if not counts[h[1]] then
      order[#order + 1] = h[1]
      counts[h[1]] = 0
    end
    counts[h[1]] = counts[h[1]] + 1
    total = total + 1
  end
end
local running = Key.fair_running(q)
redis.call('DEL', running)
for _, lane in ipairs(order) do
  redis.call('HSET', running, lane, counts[lane])
end
return total
