-- Move jobs from a queue's failed registry back onto the queue, as RQ's
-- FailedJobRegistry.requeue does (their retries are not reset). Each job is moved on its own.
--
-- ARGV[1] RQ prefix   ARGV[2] queue   ARGV[3] now (RQ timestamp)   ARGV[4..] job ids
-- Returns one code per id: 1 requeued, 0 not in the failed registry, -1 its hash is gone.
-- FIXED_ARGS: prefix, queue, now
local FIXED_ARGS = 3
local p, q = ARGV[1], ARGV[2]
local codes = {}
for i = FIXED_ARGS + 1, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', Key.failed(p, q), id) == 0 then
    codes[#codes + 1] = 0
  else
    local jkey = Key.job(p, id)
    if redis.call('EXISTS', jkey) == 0 then
      codes[#codes + 1] = -1
    else
      redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', ARGV[3])
      redis.call('HDEL', jkey, 'ended_at')
      -- A failed job's hash was set to expire with its failure TTL; a queued job must not.
      redis.call('PERSIST', jkey)
      push_job(p, q, id, redis.call('HGET', jkey, 'lane'), false)
      codes[#codes + 1] = 1
    end
  end
end
return codes
