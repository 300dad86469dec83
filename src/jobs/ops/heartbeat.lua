-- A worker's heartbeat, as RQ's: refresh its registration and, for each job it runs, push the
-- started-registry deadline forward and write the job's `last_heartbeat`.
-- A job is touched only while its started-registry entry is still there: recovery or `rq info`
-- may have taken it away, or a settle with result_ttl 0 deleted its hash, which a bare HSET
-- would re-create as a stub (RQ's own heartbeat does that, then DELs it again).
--
-- ARGV[1] RQ prefix   ARGV[2] worker name   ARGV[3] now (RQ timestamp)   ARGV[4] TTL (s)
-- ARGV[5] deadline (integer Unix seconds)   ARGV[6] inboxes set key   ARGV[7] number of queues Q
-- ARGV[8 .. 7+Q] the worker's queues, then FIELDS_PER_EXECUTION per running execution
-- (ARGV[5], the deadline, is also written to the registration as `prosaas_deadline`: recovery
-- takes a job of a registered worker only if the worker heartbeated past the job's deadline
-- without renewing it.)
-- Returns how many executions were still registered (and so refreshed), or -1 without touching
-- anything when the worker's registration has expired (an outage longer than its TTL): the
-- worker registers itself again, whole, rather than this re-creating a stub RQ cannot read.
-- FIXED_ARGS: prefix, worker, now, ttl, deadline, inboxes, queue_count
-- FIELDS_PER_EXECUTION: queue, id, eid
local FIXED_ARGS = 7
local FIELDS_PER_EXECUTION = 3
local p, w, now, ttl, deadline = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local wkey = Key.worker(p, w)
if redis.call('EXISTS', wkey) == 0 then
  return -1
end
-- The state is left to claims and settles, which know when it changes.
redis.call('HSET', wkey, 'last_heartbeat', now, 'prosaas_deadline', deadline)
redis.call('EXPIRE', wkey, ttl)
-- Re-adding is cheap and heals a registration that a cleanup removed.
redis.call('SADD', Key.workers(p), wkey)
redis.call('SADD', ARGV[6], w)
local nq = tonumber(ARGV[7])
for i = FIXED_ARGS + 1, FIXED_ARGS + nq do
  redis.call('SADD', Key.workers_of(p, ARGV[i]), wkey)
end
local refreshed = 0
for i = FIXED_ARGS + nq + 1, #ARGV, FIELDS_PER_EXECUTION do
  local q, id, eid = unpack(ARGV, i, i + FIELDS_PER_EXECUTION - 1)
  local wip = Key.started(p, q)
  -- An execution without an id was claimed in RQ 1.x's format: its member is the plain id.
  local member = eid == '' and id or id .. ':' .. eid
  if redis.call('ZSCORE', wip, member) then
    redis.call('ZADD', wip, deadline, member)
    redis.call('HSET', Key.job(p, id), 'last_heartbeat', now)
    refreshed = refreshed + 1
  end
end
return refreshed
