-- A queue's head, who serves it and what waits for dependencies: the enqueued_at of the job at
-- its head (its oldest; '' for an empty queue), how many registered workers (prosaas's or Python
-- RQ's, which both keep `rq:workers:<q>`) listen on it, counting only those whose registration
-- has not expired, and its deferred registry's oldest entry and stranded jobs.
-- Read-only; one script so the head cannot change between reading the id and its job.
--
-- A deferred job is stranded when none of its parents can still end: each is gone (deleted or
-- expired), or has ended without releasing it (canceled, stopped, failed without
-- allow_dependency_failures, or its release was lost). Nothing will ever move it; RQ leaves
-- such jobs silently. Only the ARGV[2] oldest deferrals are looked at, so the count is a floor.
--
-- KEYS[1] rq:queue:<q>   KEYS[2] rq:workers:<q>   KEYS[3] rq:deferred:<q>
-- ARGV[1] RQ prefix with colon   ARGV[2] the most deferred jobs to look at
-- Returns {enqueued_at or '', live workers, oldest deferral's score or '', stranded among those
-- looked at, one stranded job's id or ''}.
-- FIXED_KEYS: queue, workers_of, deferred
-- FIXED_ARGS: prefix, deferred_checked
-- REPLY: enqueued_at, live_workers, oldest_deferred, stranded, stranded_example
local FIXED_KEYS = 3
local FIXED_ARGS = 2
local REPLY = 5
local p = ARGV[1]
local at = ''
local id = redis.call('LINDEX', KEYS[1], 0)
if id then
  at = redis.call('HGET', Key.job(p, id), 'enqueued_at') or ''
end
local live = 0
for _, w in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  live = live + redis.call('EXISTS', w)
end
-- Statuses of a parent that may still end, and release its dependents when it does.
local PENDING = {queued = true, started = true, deferred = true, scheduled = true,
  created = true, ready_to_enqueue = true, rate_limited = true}
local oldest, stranded, example = '', 0, ''
local deferred = redis.call('ZRANGE', KEYS[3], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
if #deferred > 0 then oldest = deferred[2] end
for k = 1, #deferred, 2 do
  local d = deferred[k]
  if redis.call('HGET', Key.job(p, d), 'status') == 'deferred' then
    local waiting = false
    for _, parent in ipairs(redis.call('SMEMBERS', Key.dependencies(p, d))) do
      if PENDING[redis.call('HGET', Key.job(p, parent), 'status') or ''] then
        waiting = true
        break
      end
    end
    if not waiting then
      stranded = stranded + 1
      if example == '' then example = d end
    end
  end
end
return {at, live, oldest, stranded, example}
