-- Cancel a job that has not started, as RQ's `job.cancel()` does: off its queue (or its tenant
-- lane) and its scheduled or deferred registry, into rq:canceled:<q> (score: the cancel time;
-- RQ never prunes it, prune.lua drops entries whose job is gone), status `canceled`. Its hash
-- stays, so `Job.fetch` and `jobs show` still find it. An id already moved into a worker's inbox
-- is dropped there by claim.lua, which never starts a canceled job. Dependents stay deferred, as
-- with RQ's default `enqueue_dependents=False`.
--
-- ARGV[1] RQ prefix   ARGV[2] job id   ARGV[3] now (Unix seconds, the registry score)
-- Returns {code, status before}: 1 canceled now, 2 already canceled, 3 already ended (finished,
-- failed or stopped: nothing to cancel), -2 running (stop it instead), 0 no such job.
-- FIXED_ARGS: prefix, id, now
local FIXED_ARGS = 3
local p, id, now = ARGV[1], ARGV[2], ARGV[3]
local jkey = Key.job(p, id)
local h = redis.call('HMGET', jkey, 'status', 'origin', 'lane')
if not h[1] and not h[2] then
  return {0, ''}
end
local status = h[1] or 'queued'
if status == 'started' then
  return {-2, status}
end
if status == 'canceled' then
  return {2, status}
end
if status == 'finished' or status == 'failed' or status == 'stopped' then
  return {3, status}
end
local q = h[2]
if q then
  unqueue(p, q, id, h[3])
  redis.call('ZREM', Key.scheduled(p, q), id)
  redis.call('ZREM', Key.deferred(p, q), id)
  redis.call('ZADD', Key.canceled(p, q), now, id)
end
redis.call('HSET', jkey, 'status', 'canceled')
return {1, status}
