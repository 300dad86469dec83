-- Delete a job everywhere it can be: its queue, every registry of its queue, its hash and its
-- results, and the de-dupe lock that admitted it, if that lock still names it (a provider's
-- retry is then admitted again, not answered as a duplicate of nothing). A running job is
-- refused (its worker would record an outcome for a deleted job).
--
-- ARGV[1] RQ prefix   ARGV[2] job id
-- Returns 1 deleted, 0 no such job, -2 the job is running.
local p, id = ARGV[1], ARGV[2]
local jkey = p .. 'job:' .. id
local h = redis.call('HMGET', jkey, 'status', 'origin', 'dedupe_lock', 'lane')
if not h[1] and not h[2] then
  return 0
end
if h[1] == 'started' then
  return -2
end
local q = h[2]
if q then
  redis.call('LREM', p .. 'queue:' .. q, 0, id)
  if h[4] and h[4] ~= '' then
    lanes_queued(q, -redis.call('LREM', lane_list(p, q, h[4]), 0, id))
  end
  for _, r in ipairs({'finished', 'failed', 'scheduled', 'deferred', 'canceled'}) do
    redis.call('ZREM', p .. r .. ':' .. q, id)
  end
end
if h[3] and redis.call('GET', h[3]) == id then
  redis.call('DEL', h[3])
end
redis.call('DEL', jkey, p .. 'results:' .. id, 'prosaas:unstarted:' .. id)
return 1
