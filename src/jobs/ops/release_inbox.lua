-- Give the ids in a worker's inbox (moved there by its blocking wake-up, not yet claimed) back
-- to the head of their queues. Used by the worker itself on shutdown (force = '1') and by
-- recovery for a worker whose registration has expired (force = '0').
--
-- For a dead worker, also sweep the jobs it was running (prosaas:worker:<w>:running): one whose
-- hash still says it is started by that worker but whose started-registry entry is gone (RQ 1.x's
-- cleanup drops entries it cannot parse, without touching the job) is an orphan that nothing
-- would ever recover. Its entry is put back with a deadline in the past, so the recovery pass
-- that follows treats it as abandoned, with the job's retry policy.
--
-- The record stays as long as any job in it is still started by the dead worker: the pass that
-- sweeps may be a bystander's that does not serve the job's queue, and RQ 1.x tooling can drop
-- the entry again before a worker of that queue recovers it, so every later pass (anyone's)
-- must still be able to put it back. Members whose job has moved on (settled, recovered, gone)
-- leave; the record and the worker's name go when nothing is left.
--
-- ARGV[1] RQ prefix   ARGV[2] worker name   ARGV[3] inbox key   ARGV[4] inboxes set key
-- ARGV[5] force   ARGV[6] fallback queue for ids whose job has no origin
-- Returns the number of ids returned (and orphans put back), or -1 when the worker is alive and
-- force is not set.
-- FIXED_ARGS: prefix, worker, inbox, inboxes, force, fallback_queue
local FIXED_ARGS = 6
local p, w, inbox, inboxes = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local wkey = Key.worker(p, w)
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
  local h = redis.call('HMGET', Key.job(p, id), 'origin', 'lane')
  push_job(p, h[1] or ARGV[6], id, h[2], true)
  returned = returned + 1
end
-- The worker's own release at shutdown keeps its name listed, so that an id its closing
-- wake-up connection moved in at the last moment is still found by recovery later.
if ARGV[5] ~= '1' then
  local running = Key.running(w)
  for _, member in ipairs(redis.call('SMEMBERS', running)) do
    local id = string.match(member, '^[^:]+')
    local h = redis.call('HMGET', Key.job(p, id), 'status', 'worker_name', 'origin')
    if h[1] == 'started' and h[2] == w and h[3] then
      local wip = Key.started(p, h[3])
      if not redis.call('ZSCORE', wip, member) then
        redis.call('ZADD', wip, 0, member)
        returned = returned + 1
      end
    else
      redis.call('SREM', running, member)
    end
  end
  if redis.call('SCARD', running) == 0 then
    redis.call('SREM', inboxes, w)
  end
end
return returned
