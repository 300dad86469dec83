-- Move one job from a queue's failed registry back onto the queue, as RQ's
-- FailedJobRegistry.requeue does (its retries are not reset).
--
-- ARGV[1] RQ prefix   ARGV[2] queue   ARGV[3] job id   ARGV[4] now (RQ timestamp)
-- Returns 1 when requeued, 0 when the job is not in the failed registry, -1 when its hash is gone.
local p, q, id = ARGV[1], ARGV[2], ARGV[3]
if redis.call('ZREM', p .. 'failed:' .. q, id) == 0 then
  return 0
end
local jkey = p .. 'job:' .. id
if redis.call('EXISTS', jkey) == 0 then
  return -1
end
redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', ARGV[4])
redis.call('HDEL', jkey, 'ended_at')
-- A failed job's hash was set to expire with its failure TTL; a queued job must not.
redis.call('PERSIST', jkey)
redis.call('SADD', p .. 'queues', p .. 'queue:' .. q)
redis.call('RPUSH', p .. 'queue:' .. q, id)
return 1
