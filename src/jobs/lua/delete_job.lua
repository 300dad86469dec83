-- Delete a job everywhere it can be: its queue, every registry of its queue, its hash, its
-- results and dependency sets, and the de-dupe lock that admitted it, if that lock still names it (a provider's
-- retry is then admitted again, not answered as a duplicate of nothing). A running job is
-- refused (its worker would record an outcome for a deleted job).
--
-- ARGV[1] RQ prefix   ARGV[2] job id
-- Returns 1 deleted, 0 no such job, -2 the job is running.
-- FIXED_ARGS: prefix, id
local FIXED_ARGS = 2
local p, id = ARGV[1], ARGV[2]
local jkey = Key.job(p, id)
local h = redis.call('HMGET', jkey, 'status', 'origin', 'dedupe_lock', 'lane')
if not h[1] and not h[2] then
  return 0
end
if h[1] == 'started' then
  return -2
end
local q = h[2]
if q then
  unqueue(p, q, id, h[4])
  for _, registry in ipairs({Key.finished(p, q), Key.failed(p, q), Key.scheduled(p, q),
      Key.deferred(p, q), Key.canceled(p, q)}) do
    redis.call('ZREM', registry, id)
  end
end
if h[3] and redis.call('GET', h[3]) == id then
  redis.call('DEL', h[3])
end
-- Its dependency sets go with it, as RQ's Job.delete deletes them: a dependent left waiting for
-- it is then reported as stranded (queue_head.lua), not kept alive by a set nobody expires.
redis.call('DEL', jkey, Key.results(p, id), Key.unstarted(id), Key.dependents(p, id),
  Key.dependencies(p, id))
return 1
