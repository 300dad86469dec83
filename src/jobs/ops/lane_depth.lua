-- Count the jobs waiting in a fair queue's tenant lanes into prosaas:fair:<q>:queued: when the
-- count is missing (lanes written by a release that did not keep it, or a count someone
-- deleted), or, with ARGV[3] = '1', anew while the ring has at most ARGV[4] lanes, which
-- corrects what a tool that moves lanes' jobs by itself (or an older release's worker beside a
-- newer one, during an upgrade) made it miss. The scripts that push and pop keep it between
-- (lanes.lua's lanes_queued). One walk of the ring, so run by maintenance, never per request.
--
-- ARGV[1] RQ prefix   ARGV[2] queue   ARGV[3] '1' to recount a present count   ARGV[4] most lanes
-- Returns the count set, or -1 when it was left alone.
-- FIXED_ARGS: prefix, queue, anew, most_lanes
local FIXED_ARGS = 4
local p, q = ARGV[1], ARGV[2]
local key = Key.fair_queued(q)
if redis.call('EXISTS', key) == 1 and (ARGV[3] ~= '1'
    or redis.call('ZCARD', Key.fair_ring(q)) > tonumber(ARGV[4])) then
  return -1
end
local total = 0
for _, t in ipairs(redis.call('ZRANGE', Key.fair_ring(q), 0, -1)) do
  if t ~= '' then
    total = total + redis.call('LLEN', lane_list(p, q, t))
  end
end
redis.call('SET', key, total)
return total
