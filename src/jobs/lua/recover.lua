-- Recover the jobs of one queue whose heartbeat deadline has passed (their worker died or
-- stalled): re-queue each at the head of its queue while it has retries left, else fail it as
-- abandoned, as RQ's StartedJobRegistry.cleanup does.
--
-- ARGV[1] RQ prefix   ARGV[2] queue   ARGV[3] now (Unix s)   ARGV[4] now (RQ timestamp)
-- ARGV[5] retries for jobs that carry no retries_left   ARGV[6] base64 zlib error text
-- ARGV[7] failure TTL for jobs that carry none   ARGV[8] max entries this call
-- ARGV[9] maintenance lock key   ARGV[10] lock owner   ARGV[11] lock TTL (ms)
-- ARGV[12] the longest TTL (s) to set
-- Returns {requeued, failed, skipped, busy}; busy = 1 when another worker holds the queue's
-- maintenance lock (it is recovering this queue; nothing was done).
local p, q, now, now_ts = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local holder = redis.call('GET', ARGV[9])
if holder and holder ~= ARGV[10] then
  return {0, 0, 0, 1}
end
redis.call('SET', ARGV[9], ARGV[10], 'PX', ARGV[11])
local default_retries, exc, default_ttl = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local max_ttl = tonumber(ARGV[12])
-- A failure TTL from the job hash (anyone may have written it) as RQ means it: negative is no
-- expiry. Whole seconds, at most max_ttl: Redis refuses an EXPIRE past its clock, and that error
-- would fail this whole pass, again on every pass.
local function stored_ttl(v)
  if v < 0 then return -1 end
  return math.min(math.floor(v), max_ttl)
end
local wip = p .. 'wip:' .. q
local expired = redis.call('ZRANGEBYSCORE', wip, '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
local requeued, failed, skipped = 0, 0, 0
for _, member in ipairs(expired) do
  redis.call('ZREM', wip, member)
  local id = string.match(member, '^[^:]+')
  local jkey = p .. 'job:' .. id
  local h = redis.call('HMGET', jkey, 'status', 'retries_left', 'failure_ttl')
  if h[1] ~= 'started' then
    -- Gone, or already settled by someone else: only the stale registry entry was left.
    skipped = skipped + 1
  else
    local left = tonumber(h[2]) or default_retries
    if left > 0 then
      redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', now_ts, 'retries_left', left - 1,
        'last_error', 'AbandonedJobError: its worker stopped heartbeating')
      redis.call('LPUSH', p .. 'queue:' .. q, id)
      requeued = requeued + 1
    else
      local ttl = stored_ttl(tonumber(h[3]) or default_ttl)
      local rkey = p .. 'results:' .. id
      redis.call('HSET', jkey, 'status', 'failed', 'ended_at', now_ts)
      redis.call('XADD', rkey, 'MAXLEN', '~', 10, '*', 'type', 2, 'worker_name', '',
        'exc_string', exc)
      if ttl == -1 then
        redis.call('ZADD', p .. 'failed:' .. q, -1, id)
      else
        redis.call('EXPIRE', jkey, ttl)
        redis.call('EXPIRE', rkey, ttl)
        redis.call('ZADD', p .. 'failed:' .. q, now + ttl, id)
      end
      failed = failed + 1
    end
  end
end
return {requeued, failed, skipped, 0}
