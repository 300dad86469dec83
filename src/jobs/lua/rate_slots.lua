-- RQ 3.0's rate limits (`enqueue(..., rate_limit=RateLimit(key, n))`), prepended after
-- dependents.lua to the scripts that end jobs (settle, recovery). A Python-made job holds a slot
-- of its limit (rq:rl:<key>:allowed) from its promotion until it ends, and at most the limit's
-- `concurrency` (rq:rl:<key>) hold one; the rest wait, status `rate_limited`, in
-- rq:rl:<key>:rate_limited. When a job ends in any status but queued or started, its slot is
-- freed and the oldest waiting jobs fill the free slots, each pushed onto its queue (at the head
-- with enqueue_at_front) and marked queued: RQ's RELEASE_AND_ENQUEUE_SCRIPT, run in the same step
-- as the outcome (RQ runs it after its own, and lets maintenance free a slot lost between).
local function release_rate_slot(p, limit, id, now_score, now_ts)
  local allowed, waiting = Key.rate_allowed(p, limit), Key.rate_waiting(p, limit)
  redis.call('ZREM', allowed, id)
  local concurrency = tonumber(redis.call('HGET', Key.rate_limit(p, limit), 'concurrency') or '') or 0
  while redis.call('ZCARD', allowed) < concurrency do
    local popped = redis.call('ZPOPMIN', waiting)
    if #popped == 0 then break end
    local next_id = popped[1]
    local jkey = Key.job(p, next_id)
    local h = redis.call('HMGET', jkey, 'origin', 'status', 'enqueue_at_front')
    -- An entry whose job is gone or no longer waits is dropped, as RQ drops it.
    if h[1] and h[2] == 'rate_limited' then
      redis.call('ZADD', allowed, now_score, next_id)
      if h[3] == '1' then
        redis.call('LPUSH', Key.queue(p, h[1]), next_id)
      else
        redis.call('RPUSH', Key.queue(p, h[1]), next_id)
      end
      redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', now_ts)
    end
  end
end

