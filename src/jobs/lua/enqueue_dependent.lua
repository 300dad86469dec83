-- Enqueue a batch of which some jobs wait for others (RQ's `depends_on`), all or none, as RQ's
-- Queue.setup_dependencies writes them (shared/rq-protocol.md §3.1.3): a job whose parents have
-- all finished (or failed, with allow_dependency_failures) is queued at once; any other waits
-- `deferred` in rq:deferred:<q>, named in each parent's rq:job:<parent>:dependents and its own
-- rq:job::<id>:dependencies, until the last parent's outcome moves it on (dependents.lua). A
-- parent may be an earlier job of the same batch, so a chain is enqueued in one call.
--
-- Every parent is checked before anything is written (a script stops at an error but keeps
-- what it already wrote): one that does not exist, or that ended in a way that can never
-- release this job (canceled, stopped, or failed without allow_dependency_failures), refuses
-- the whole batch.
--
-- ARGV[1] RQ prefix   ARGV[2] now (RQ timestamp)   ARGV[3] now (Unix s: the deferral's score)
-- then per job FIELDS_PER_JOB, followed by its `parents` ids and `fields` field/value pairs:
--   id, queue, lane ('' for none), at_front ('1'/''), explicit ('1' when the caller chose the
--   id: an earlier job of that id is replaced whole, or with unique ('1') refused while it
--   waits or runs), ttl ('' for none), allow ('1'/''), parents (count), fields (count of pairs)
-- Returns {'ok'}, {'refused', parent id, its status ('' when it does not exist)}, or
-- {'busy', id, its status} (a unique job whose id is queued, scheduled, started or deferred).
-- FIXED_ARGS: prefix, now_ts, now
-- FIELDS_PER_JOB: id, queue, lane, at_front, explicit, unique, ttl, allow, parents, fields
local FIXED_ARGS = 3
local FIELDS_PER_JOB = 10
local p, now_ts, now = ARGV[1], ARGV[2], ARGV[3]

-- The batch, read first: each job's header, parents and where its fields start.
local jobs = {}
local i = FIXED_ARGS + 1
while i <= #ARGV do
  local id, q, lane, front, explicit, unique, ttl, allow, np, nf =
    unpack(ARGV, i, i + FIELDS_PER_JOB - 1)
  local job = {id = id, q = q, lane = lane, front = front == '1', explicit = explicit == '1',
    unique = unique == '1', ttl = ttl, allow = allow == '1', parents = {}, first_field = 0,
    fields = tonumber(nf)}
  i = i + FIELDS_PER_JOB
  for k = 1, tonumber(np) do job.parents[k] = ARGV[i + k - 1] end
  i = i + tonumber(np)
  job.first_field = i
  i = i + 2 * job.fields
  jobs[#jobs + 1] = job
end

-- Each parent's status: an earlier job of this batch is 'queued' or 'deferred' (not finished).
local in_batch = {}
local ACTIVE = {queued = true, started = true, scheduled = true, deferred = true}
for _, job in ipairs(jobs) do
  if job.unique then
    local s = in_batch[job.id] or redis.call('HGET', Key.job(p, job.id), 'status')
    if ACTIVE[s or ''] then return {'busy', job.id, s} end
  end
  job.waits = false
  for _, parent in ipairs(job.parents) do
    local s = in_batch[parent] or redis.call('HGET', Key.job(p, parent), 'status')
    if not s or s == 'canceled' or s == 'stopped' or (s == 'failed' and not job.allow) then
      return {'refused', parent, s or ''}
    end
    if s ~= 'finished' and s ~= 'failed' then job.waits = true end
  end
  in_batch[job.id] = job.waits and 'deferred' or 'queued'
end

for _, job in ipairs(jobs) do
  local jkey = Key.job(p, job.id)
  if job.explicit then
    -- A reused id must not inherit the fields or the parents of an earlier job of that id.
    redis.call('DEL', jkey, Key.dependencies(p, job.id))
  end
  redis.call('HSET', jkey, unpack(ARGV, job.first_field, job.first_field + 2 * job.fields - 1))
  if job.waits then
    redis.call('HSET', jkey, 'status', 'deferred')
    redis.call('HDEL', jkey, 'enqueued_at')
    redis.call('ZADD', Key.deferred(p, job.q), now, job.id)
    local deps = Key.dependencies(p, job.id)
    for _, parent in ipairs(job.parents) do
      redis.call('SADD', Key.dependents(p, parent), job.id)
      redis.call('SADD', deps, parent)
    end
    redis.call('SADD', Key.queues(p), Key.queue(p, job.q))
    if job.ttl ~= '' then redis.call('EXPIRE', deps, job.ttl) end
  else
    push_job(p, job.q, job.id, job.lane, job.front)
  end
  if job.ttl ~= '' then redis.call('EXPIRE', jkey, job.ttl) end
end
return {'ok'}
