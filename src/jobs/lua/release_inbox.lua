-- Give the ids in a worker's inbox (moved there by its blocking wake-up, not yet claimed) back
-- to the head of their queues. Used by the worker itself on shutdown (force = '1') and by
-- recovery for a worker whose registration has expired (force = '0').
--
-- ARGV[1] RQ prefix   ARGV[2] worker name   ARGV[3] inbox key   ARGV[4] inboxes set key
-- ARGV[5] force   ARGV[6] fallback queue for ids whose job has no origin
-- Returns the number of ids returned, or -1 when the worker is alive and force is not set.
local p, w, inbox, inboxes = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local wkey = p .. 'worker:' .. w
-- A worker is alive while its registration exists without a `death` mark (RQ keeps a dead
-- worker's hash for 60 s after register_death).
if ARGV[5] ~= '1' and redis.call('EXISTS', wkey) == 1 and redis.call('HEXISTS', wkey, 'death') == 0 then
  return -1
end
local returned = 0
while true do
  -- From the tail, pushed to the head: the queue keeps the inbox's order.
  local id = redis.call('RPOP', inbox)
  if not id then break end
  local origin = redis.call('HGET', p .. 'job:' .. id, 'origin') or ARGV[6]
  redis.call('LPUSH', p .. 'queue:' .. origin, id)
  returned = returned + 1
end
-- The worker's own release at shutdown keeps its name listed, so that an id its closing
-- wake-up connection moved in at the last moment is still found by recovery later.
if ARGV[5] ~= '1' then
  redis.call('SREM', inboxes, w)
end
return returned
