-- The enqueued_at of the job at the head of a queue (its oldest), or false for an empty queue.
-- Read-only; one script so the head cannot change between reading the id and its job.
--
-- KEYS[1] rq:queue:<q>   ARGV[1] RQ prefix with colon
local id = redis.call('LINDEX', KEYS[1], 0)
if not id then
  return false
end
return redis.call('HGET', ARGV[1] .. 'job:' .. id, 'enqueued_at')
