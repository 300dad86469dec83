-- Recover the jobs of one queue whose heartbeat deadline has passed (their worker died or
-- stalled): re-queue each at the head of its queue while it has retries left, else fail it as
-- abandoned, as RQ's StartedJobRegistry.cleanup does.
--
-- A job whose worker is still registered is left alone unless that worker has heartbeated past
-- the job's deadline without renewing it (`prosaas_deadline` on the registration is later than
-- the entry's): a registered worker renews every job it runs, so only then is the job truly
-- stalled. A worker's registration expires with its jobs' deadlines, so a dead worker's jobs are
-- recovered as before.
--
-- The retries a job has: its own `retries_left`; else what the caller decides from its type and
-- who enqueued it (the type's policy for a job prosaas enqueued; none for one Python RQ enqueued
-- without `Retry`, as RQ runs it once): such jobs are returned unrecovered with their data and
-- `enqueued_by`, and the caller calls again with their counts in ARGV[13..] (id, retries pairs).
--
-- ARGV[1] RQ prefix   ARGV[2] queue   ARGV[3] now (Unix s, Redis's clock)   ARGV[4] now (RQ timestamp)
-- ARGV[5] expired entries to pass over (left in place by earlier calls of this pass)
-- ARGV[6] base64 zlib error text
-- ARGV[7] failure TTL for jobs that carry none   ARGV[8] max entries this call
-- ARGV[9] maintenance lock key   ARGV[10] lock owner   ARGV[11] lock TTL (ms)
-- ARGV[12] the longest TTL (s) to set   then FIELDS_PER_DECISION per job decided by the caller
-- Returns REPLY_HEAD, then FIELDS_PER_UNDECIDED per job left for the caller to decide: removed
-- counts stale entries dropped, kept the expired entries left in place (a live worker's, or
-- waiting for the caller's decision); busy = 1 when another worker holds the queue's
-- maintenance lock (it is recovering this queue; nothing was done).
-- FIXED_ARGS: prefix, queue, now, now_ts, passed_over, exc_string, failure_ttl, max_entries,
--   lock, owner, lock_ttl_ms, max_ttl
-- FIELDS_PER_DECISION: id, retries
-- REPLY_HEAD: requeued, failed, removed, busy, kept
-- FIELDS_PER_UNDECIDED: id, data, enqueued_by
local FIXED_ARGS = 12
local FIELDS_PER_DECISION = 2
local REPLY_HEAD = 5
local FIELDS_PER_UNDECIDED = 3
local p, q, now, now_ts = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local holder = redis.call('GET', ARGV[9])
if holder and holder ~= ARGV[10] then
  return {0, 0, 0, 1, 0}
end
redis.call('SET', ARGV[9], ARGV[10], 'PX', ARGV[11])
local exc, default_ttl = ARGV[6], tonumber(ARGV[7])
local max_ttl = tonumber(ARGV[12])
local decided = {}
for i = FIXED_ARGS + 1, #ARGV, FIELDS_PER_DECISION do
  decided[ARGV[i]] = tonumber(ARGV[i + 1])
end
-- A failure TTL from the job hash (anyone may have written it) as RQ means it: negative is no
-- expiry. Whole seconds, at most max_ttl: Redis refuses an EXPIRE past its clock, and that error
-- would fail this whole pass, again on every pass.
local function stored_ttl(v)
  if v < 0 then return -1 end
  return math.min(math.floor(v), max_ttl)
end
local wip = Key.started(p, q)
local expired = redis.call('ZRANGEBYSCORE', wip, '-inf', now, 'WITHSCORES', 'LIMIT',
  tonumber(ARGV[5]), tonumber(ARGV[8]))
local requeued, failed, removed, kept = 0, 0, 0, 0
local out = {0, 0, 0, 0, 0}
-- Whether a registered worker named `name` still owns an entry with this deadline.
local alive = {}
local function owned(name, deadline)
  if not name or name == '' then return false end
  local seen = alive[name]
  if seen == nil then
    local wkey = Key.worker(p, name)
    -- RQ keeps a dead worker's hash a while after register_death, with a `death` mark.
    if redis.call('EXISTS', wkey) == 1 and redis.call('HEXISTS', wkey, 'death') == 0 then
      seen = tonumber(redis.call('HGET', wkey, 'prosaas_deadline') or '0') or 0
    else
      seen = false
    end
    alive[name] = seen
  end
  return seen ~= false and seen <= deadline
end
for k = 1, #expired, 2 do
  local member, deadline = expired[k], tonumber(expired[k + 1])
  local id = string.match(member, '^[^:]+')
  local jkey = Key.job(p, id)
  local h = redis.call('HMGET', jkey, 'status', 'retries_left', 'failure_ttl', 'worker_name',
    'enqueued_by', 'lane', 'rate_limit_key')
  if h[1] ~= 'started' then
    -- Gone, or already settled by someone else: only the stale registry entry was left.
    redis.call('ZREM', wip, member)
    removed = removed + 1
  elseif owned(h[4], deadline) then
    -- Its worker is registered and has not heartbeated since: it is renewing, not dead.
    kept = kept + 1
  else
    local left = tonumber(h[2]) or decided[id]
    if not left then
      -- The caller decides from the type in the data, and calls again.
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGET', jkey, 'data') or ''
      out[#out + 1] = h[5] or ''
      kept = kept + 1
    elseif left > 0 then
      redis.call('ZREM', wip, member)
      redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', now_ts, 'retries_left', left - 1,
        'last_error', 'AbandonedJobError: its worker stopped heartbeating')
      lane_done(q, h[6])
      push_job(p, q, id, h[6], true)
      requeued = requeued + 1
    else
      redis.call('ZREM', wip, member)
      lane_done(q, h[6])
      local ttl = stored_ttl(tonumber(h[3]) or default_ttl)
      local rkey = Key.results(p, id)
      redis.call('HSET', jkey, 'status', 'failed', 'ended_at', now_ts)
      redis.call('XADD', rkey, 'MAXLEN', '~', 10, '*', 'type', 2, 'worker_name', '',
        'exc_string', exc)
      -- Its dependents that allow failures move on, as RQ's cleanup moves them, and its RQ
      -- rate-limit slot goes to the next waiting job.
      release_dependents(p, id, 'failed', now_ts)
      if (h[7] or '') ~= '' then release_rate_slot(p, h[7], id, ARGV[3], now_ts) end
      local dependents, dependencies = Key.dependents(p, id), Key.dependencies(p, id)
      if ttl == -1 then
        redis.call('ZADD', Key.failed(p, q), -1, id)
        redis.call('PERSIST', dependents)
        redis.call('PERSIST', dependencies)
      else
        redis.call('EXPIRE', jkey, ttl)
        redis.call('EXPIRE', rkey, ttl)
        redis.call('EXPIRE', dependents, ttl)
        redis.call('EXPIRE', dependencies, ttl)
        redis.call('ZADD', Key.failed(p, q), now + ttl, id)
      end
      failed = failed + 1
    end
  end
end
out[1], out[2], out[3], out[5] = requeued, failed, removed, kept
return out
