-- A queue's head and who serves it: the enqueued_at of the job at its head (its oldest; '' for an
-- empty queue), and how many registered workers (prosaas's or Python RQ's, which both keep
-- `rq:workers:<q>`) listen on it, counting only those whose registration has not expired.
-- Read-only; one script so the head cannot change between reading the id and its job.
--
-- KEYS[1] rq:queue:<q>   KEYS[2] rq:workers:<q>   ARGV[1] RQ prefix with colon
-- Returns {enqueued_at or '', live workers}.
-- FIXED_KEYS: queue, workers_of
-- FIXED_ARGS: prefix
-- REPLY: enqueued_at, live_workers
local FIXED_KEYS = 2
local FIXED_ARGS = 1
local REPLY = 2
local at = ''
local id = redis.call('LINDEX', KEYS[1], 0)
if id then
  at = redis.call('HGET', Key.job(ARGV[1], id), 'enqueued_at') or ''
end
local live = 0
for _, w in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  live = live + redis.call('EXISTS', w)
end
return {at, live}
