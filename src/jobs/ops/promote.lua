-- Move the due jobs of one queue's scheduled registry (retries with backoff, delayed jobs), and
-- the dependents RQ 3.0 left ready, onto the queue. RQ's per-queue scheduler lock decides who promotes: a Python RQ scheduler holding
-- it keeps the queue (its promotion has no WATCH, so two promoters could push a job twice).
--
-- ARGV[1] RQ prefix   ARGV[2] queue   ARGV[3] now (Unix s, fractional)   ARGV[4] now (RQ timestamp)
-- ARGV[5] lock owner: our PID, which RQ <= 2.9 reads with int()   ARGV[6] lock TTL (s)
-- ARGV[7] max jobs this call   ARGV[8] hostname
-- Returns the number promoted, or -1 when another scheduler holds the queue.
-- FIXED_ARGS: prefix, queue, now, now_ts, owner, lock_ttl, max_jobs, hostname
local FIXED_ARGS = 8
local p, q, now, now_ts, me = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local lock = Key.rq_scheduler_lock(p, q)
local holder = redis.call('GET', lock)
if holder and holder ~= me then
  return -1
end
redis.call('SET', lock, me, 'EX', ARGV[6])
-- RQ >= 2.10 resolves the lock's value through rq:scheduler:<name> to a pid.
local info = Key.rq_scheduler(p, me)
redis.call('HSET', info, 'name', me, 'pid', me, 'hostname', ARGV[8], 'queues', q,
  'last_heartbeat', now_ts)
redis.call('HSETNX', info, 'created_at', now_ts)
redis.call('EXPIRE', info, ARGV[6])
local sched = Key.scheduled(p, q)
local ids = redis.call('ZRANGEBYSCORE', sched, '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
local moved = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', sched, id)
  local jkey = Key.job(p, id)
  if redis.call('EXISTS', jkey) == 1 then
    redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', now_ts)
    local h = redis.call('HMGET', jkey, 'enqueue_at_front', 'lane')
    push_job(p, q, id, h[2], h[1] == '1')
    moved = moved + 1
  end
end
-- RQ 3.0's ready registry: dependents a Python worker marked `ready_to_enqueue` and has not
-- pushed (it died between its two steps, or is about to push: its WATCH then sees this move and
-- it drops the entry). RQ's own cleanup does the same from its workers' maintenance.
local ready = Key.ready(p, q)
for _, id in ipairs(redis.call('ZRANGE', ready, 0, tonumber(ARGV[7]) - 1)) do
  redis.call('ZREM', ready, id)
  local jkey = Key.job(p, id)
  local h = redis.call('HMGET', jkey, 'status', 'enqueue_at_front', 'lane')
  if h[1] == 'ready_to_enqueue' then
    redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', now_ts)
    push_job(p, q, id, h[3], h[2] == '1')
    moved = moved + 1
  end
end
return moved
