-- Admit an external event once: take the de-dupe lock and create + push its job in one step,
-- so there is no moment where the lock exists without the job or the job without the lock.
--
-- With a fence token (the scheduler), the step also happens only while the scheduler leader lock
-- holds that token, and records the fired slot: a leader that lost its lock (paused past its TTL)
-- can enqueue nothing, whatever it believes.
--
-- The lock ends with its job: the job hash names its lock (`dedupe_lock`, so deleting the job
-- releases it), and a job with a wait TTL shorter than the lock's has an "unstarted" marker for
-- as long as the lock lives, which its claim deletes. A lock whose job is gone is a duplicate
-- only if the job started (it ran; its result may have expired since); if it expired unstarted,
-- the event was never processed and is admitted again.
--
-- With ARGV[2] = 0 there is no lock at all: an explicit job id is enqueued unless a job of that id
-- is queued, scheduled, started or deferred ({-2, status}).
--
-- KEYS[1] job_lock:<dedupe key>   KEYS[2] rq:job:<id>   KEYS[3] the list it waits in: rq:queue:<q>,
-- or its tenant's lane rq:queue:<q>@<tenant> on a fair queue (lanes.lua)   KEYS[4] rq:queues
-- KEYS[5] leader lock key   KEYS[6] scheduler entry-state hash   KEYS[7] the job's unstarted marker
-- ARGV[1] job id   ARGV[2] lock TTL (s)   ARGV[3] 'L' | 'R' push side   ARGV[4] job wait TTL (s, 0 = none)
-- ARGV[5] RQ key prefix with colon (rq:)   ARGV[6] fence token ('' = no fence)
-- ARGV[7] entry name   ARGV[8] slot (ms)   ARGV[9] queue name   ARGV[10] lane ('' for none)
-- ARGV[11..] job hash field/value pairs
-- Returns {1, id} when enqueued, {0, existing id} for a duplicate, {-1, holder} when fenced out,
-- {-2, status} when (without a lock) the id is busy.
-- FIXED_KEYS: lock, job, list, queues, leader_lock, entries, unstarted
-- FIXED_ARGS: id, lock_ttl, side, wait_ttl, prefix, fence, entry, slot_ms, queue, lane
-- REPLY: code, value
local FIXED_KEYS = 7
local FIXED_ARGS = 10
local REPLY = 2
if ARGV[6] ~= '' then
  local holder = redis.call('GET', KEYS[5])
  if holder ~= ARGV[6] then
    return {-1, holder or ''}
  end
  -- The entry's newest fired slot only moves forward; it is how a new leader knows where the
  -- previous one stopped.
  local last = tonumber(redis.call('HGET', KEYS[6], ARGV[7]) or '-1')
  if tonumber(ARGV[8]) > last then
    redis.call('HSET', KEYS[6], ARGV[7], ARGV[8])
  end
end

local locked = ARGV[2] ~= '0'
local existing = locked and redis.call('GET', KEYS[1])
if existing then
  if existing ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 1
      or redis.call('DEL', KEYS[7]) == 0 then
    return {0, existing}
  end
  -- Its job expired before it started: the event was never processed. Admit it again, without
  -- the expired job's id left in the queue (a worker would drop it, but not before the new one
  -- is pushed under the same id).
  local removed = redis.call('LREM', KEYS[3], 0, ARGV[1])
  if ARGV[10] ~= '' then lanes_queued(ARGV[9], -removed) end
end

-- The lock can lapse while the job it admitted still waits or runs (a long queue, a short TTL).
-- A provider retry in that window must not create a second execution: re-arm and report it.
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'queued' or status == 'started' or status == 'scheduled' or status == 'deferred' then
  if not locked then
    return {-2, status}
  end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return {0, ARGV[1]}
end
if status then
  -- A finished or failed earlier run of the same event, past its de-dupe window: start clean,
  -- and drop its registry entries so the new run is not also counted as finished or failed.
  local origin = redis.call('HGET', KEYS[2], 'origin')
  if origin then
    redis.call('ZREM', Key.finished(ARGV[5], origin), ARGV[1])
    redis.call('ZREM', Key.failed(ARGV[5], origin), ARGV[1])
  end
  redis.call('DEL', KEYS[2])
end

if locked then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
redis.call('HSET', KEYS[2], unpack(ARGV, FIXED_ARGS + 1))
if tonumber(ARGV[4]) > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  if locked and tonumber(ARGV[4]) < tonumber(ARGV[2]) then
    redis.call('SET', KEYS[7], '1', 'EX', ARGV[2])
  end
end
push_job(ARGV[5], ARGV[9], ARGV[1], ARGV[10], ARGV[3] == 'L')
return {1, ARGV[1]}
