-- Dependencies (RQ's `depends_on`), prepended after lanes.lua to the scripts that end a job
-- (settle, recovery): a job that ends moves its waiting dependents onto their queues in the
-- same step, so no crash between the outcome and the move can strand one.
-- rq:job:<id>:dependents (set) holds the jobs that wait for <id>; rq:job::<id>:dependencies
-- (set, RQ's double colon) the jobs <id> waits for; a waiting job is `deferred` in
-- rq:deferred:<origin>. The rules are RQ's Job.dependencies_are_met (2.x and 3.0 alike):
-- a parent that ended `canceled` or `stopped` never releases its dependents; one that `failed`
-- releases only those with allow_dependency_failures; every other parent must be `finished`
-- (or `failed`, when allowed), and one whose hash is gone counts as met, as RQ counts it.
-- The move is RQ ≤ 2.12's direct enqueue (status queued, pushed, at the front with
-- enqueue_at_front), which RQ 3.0's readers accept too: 3.0's own two-step move through
-- rq:ready:<q> exists only because a Python worker cannot do both in one transaction.
-- Deliberately stricter than RQ: only a `deferred` dependent moves. RQ re-enqueues one that
-- already ran if a second parent ends after it (a parent's set keeps the dependents it could
-- not release); such ids are dropped from the set instead.

-- Whether every dependency of `id` (with `allow` = allow_dependency_failures) but `parent` is met.
local function other_parents_met(p, id, parent, allow)
  for _, dep in ipairs(redis.call('SMEMBERS', Key.dependencies(p, id))) do
    if dep ~= parent then
      local s = redis.call('HGET', Key.job(p, dep), 'status')
      if s and s ~= 'finished' and not (allow and s == 'failed') then return false end
    end
  end
  return true
end

-- Job `parent` ended with `status` ('finished', 'failed', 'stopped'): moves each dependent
-- whose dependencies are all met onto its queue; returns how many moved.
local function release_dependents(p, parent, status, now_ts)
  local dkey = Key.dependents(p, parent)
  local ids = redis.call('SMEMBERS', dkey)
  if #ids == 0 then return 0 end
  local done, moved = {}, 0
  for _, id in ipairs(ids) do
    local jkey = Key.job(p, id)
    local h = redis.call('HMGET', jkey, 'status', 'allow_dependency_failures', 'origin', 'lane',
      'enqueue_at_front')
    local allow = h[2] ~= false and h[2] ~= '0' and h[2] ~= ''
    if h[1] ~= 'deferred' then
      -- Gone, already on its way, run or canceled: it no longer waits for this parent.
      done[#done + 1] = id
    elseif h[3] and status ~= 'stopped' and status ~= 'canceled'
        and (status ~= 'failed' or allow) and other_parents_met(p, id, parent, allow) then
      redis.call('ZREM', Key.deferred(p, h[3]), id)
      redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', now_ts)
      push_job(p, h[3], id, h[4], h[5] == '1')
      done[#done + 1] = id
      moved = moved + 1
    end
  end
  if #done == #ids then
    redis.call('DEL', dkey)
  else
    -- unpack() is bounded by Lua's C stack, and a parent may have thousands of dependents.
    for i = 1, #done, 2000 do
      redis.call('SREM', dkey, unpack(done, i, math.min(i + 1999, #done)))
    end
  end
  return moved
end
