-- Tenant lanes, prepended to every script that puts a job on a queue or takes one off (see
-- scripts.rs). A job of a fair queue that names a tenant waits in that tenant's lane, the RQ
-- queue `<queue>@<tenant>` (listed in rq:queues while it holds jobs, so `rq info` counts it),
-- not in the queue's own list. The job hash's `lane` field names the tenant, so a job that goes
-- back (retry, recovery, shutdown, requeue) returns to its lane whoever moves it.
-- prosaas:fair:<queue>:ring (zset) holds the tenants with queued jobs, scored by their pass in
-- the round robin (claim.lua); :queued (string) counts the jobs waiting in all its lanes, kept
-- by every script that pushes onto a lane or takes off one, so a fair queue of any number of
-- tenants is counted exactly in one read; :running (hash) counts each tenant's started jobs on a
-- queue with a tenant cap; :bell (list)
-- wakes idle workers, since a blocking pop cannot wait on lanes that do not exist yet.
local LANE_BELL_TOKENS = 16

local function lane_list(p, q, lane)
  if lane and lane ~= '' then
    return Key.lane(p, q, lane)
  end
  return Key.queue(p, q)
end

-- Wakes up to LANE_BELL_TOKENS idle workers: one token per waiting worker is enough, and the
-- bound keeps a flood of enqueues from piling tokens up while every worker is busy.
local function ring_bell(q)
  local bell = Key.fair_bell(q)
  redis.call('RPUSH', bell, '1')
  redis.call('LTRIM', bell, -LANE_BELL_TOKENS, -1)
end

-- `delta` jobs went onto (or, negative, off) q's tenant lanes. A count that is not there is
-- not started from a wrong base (lanes an older release filled): maintenance counts it whole
-- first (lane_depth.lua).
local function lanes_queued(q, delta)
  local key = Key.fair_queued(q)
  if delta ~= 0 and redis.call('EXISTS', key) == 1 then
    redis.call('INCRBY', key, delta)
  end
end

-- Puts job `id` of queue `q` on its lane (or the queue's own list without one), at the head
-- when `front`. A tenant joining the ring enters with pass 0: it is served next, one turn, then
-- takes its place in the rotation (new lanes first, as fq_codel serves new flows).
local function push_job(p, q, id, lane, front)
  local key = lane_list(p, q, lane)
  redis.call(front and 'LPUSH' or 'RPUSH', key, id)
  redis.call('SADD', Key.queues(p), key)
  if lane and lane ~= '' then
    -- The queue itself stays listed too: `rq info` shows its registries (finished, failed).
    redis.call('SADD', Key.queues(p), Key.queue(p, q))
    redis.call('ZADD', Key.fair_ring(q), 'NX', 0, lane)
    lanes_queued(q, 1)
    ring_bell(q)
  end
end

-- Takes a waiting `id` off queue `q`'s list and, when it waits in a tenant lane, off that lane,
-- keeping the lanes' count (a delete, a cancel). Python RQ's own removals reach only the list.
local function unqueue(p, q, id, lane)
  redis.call('LREM', Key.queue(p, q), 0, id)
  if lane and lane ~= '' then
    lanes_queued(q, -redis.call('LREM', lane_list(p, q, lane), 0, id))
  end
end

-- One started job of `lane` in `q` has stopped running (settled, recovered, deferred).
local function lane_done(q, lane)
  if lane and lane ~= '' then
    local key = Key.fair_running(q)
    if redis.call('HINCRBY', key, lane, -1) <= 0 then
      redis.call('HDEL', key, lane)
    end
  end
end

