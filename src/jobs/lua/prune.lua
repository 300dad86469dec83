-- Prune what a queue's registries, and the shared sets, hold past their purpose: what Python
-- RQ's workers do in their maintenance (clean_registries, clean_worker_registry), and a little
-- more, at most ARGV[5] entries per call. Maintenance calls again while a call comes back full,
-- up to a budget per pass, so a large backlog is pruned over several passes without holding
-- Redis for long.
--
-- ARGV[1] RQ prefix   ARGV[2] queue ('' for the shared phases)   ARGV[3] phase
-- ARGV[4] now (Unix s, Redis's clock)   ARGV[5] most entries looked at in this call
-- ARGV[6..] (phase 'queues') the queues this process serves
--
-- Phases:
--   finished, failed   entries whose score is in [0, now]: expired, as RQ's
--                      ZREMRANGEBYSCORE 0 now (a score of -1 or +inf is kept forever)
--   canceled, deferred, scheduled
--                      entries whose job hash is gone: RQ never prunes canceled jobs, a deferred
--                      entry's score means different things across RQ versions, and a scheduled
--                      job waits until due, so only the hash tells (walked from a cursor kept in
--                      prosaas:prune:<q>)
--   workers            members of rq:workers:<q> whose worker key is gone, from both it and
--                      rq:workers (RQ's clean_worker_registry); with queue '', rq:workers itself
--   queues             rq:queues members (SSCAN from a kept cursor) whose list is empty and
--                      whose registries are all empty, which no registered worker listens on and
--                      this process does not serve: RQ lists them forever otherwise
--   groups             RQ 3.0's groups (rq:groups, SSCAN from a kept cursor, a few per call):
--                      ids in rq:group:<name> whose job is gone (each group walked from a cursor
--                      of its own), and the group's name once its set is empty, as Python RQ's
--                      worker maintenance (Group.clean_registries) does
-- Returns {removed, more}: more = 1 when the call stopped at its bound.
-- FIXED_ARGS: prefix, queue, phase, now, most
-- REPLY: removed, more
local FIXED_ARGS = 5
local REPLY = 2
local p, q, phase, now, most = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local cursors = Key.prune_cursors(q)

-- ZREM/SREM in slices: unpack() is bounded by Lua's C stack.
local function remove_all(cmd, key, members)
  for i = 1, #members, 500 do
    redis.call(cmd, key, unpack(members, i, math.min(i + 499, #members)))
  end
end

-- The registries a phase walks, by its name.
local registry = {finished = Key.finished(p, q), failed = Key.failed(p, q),
  canceled = Key.canceled(p, q), deferred = Key.deferred(p, q), scheduled = Key.scheduled(p, q)}

if phase == 'finished' or phase == 'failed' then
  local key = registry[phase]
  local ids = redis.call('ZRANGEBYSCORE', key, 0, now, 'LIMIT', 0, most)
  remove_all('ZREM', key, ids)
  return {#ids, #ids == most and 1 or 0}
end

if phase == 'canceled' or phase == 'deferred' or phase == 'scheduled' then
  local key = registry[phase]
  local at = tonumber(redis.call('HGET', cursors, phase) or '0') or 0
  local ids = redis.call('ZRANGE', key, at, at + most - 1)
  local gone = {}
  for _, id in ipairs(ids) do
    if redis.call('EXISTS', Key.job(p, id)) == 0 then
      gone[#gone + 1] = id
    end
  end
  remove_all('ZREM', key, gone)
  local more = #ids == most and 1 or 0
  redis.call('HSET', cursors, phase, more == 1 and (at + #ids - #gone) or 0)
  return {#gone, more}
end

if phase == 'workers' then
  local all = Key.workers(p)
  local set = q ~= '' and (Key.workers_of(p, q)) or all
  local gone = {}
  for _, w in ipairs(redis.call('SMEMBERS', set)) do
    if redis.call('EXISTS', w) == 0 then
      gone[#gone + 1] = w
    end
  end
  remove_all('SREM', set, gone)
  if set ~= all then
    remove_all('SREM', all, gone)
  end
  return {#gone, 0}
end

if phase == 'queues' then
  local served = {}
  for i = FIXED_ARGS + 1, #ARGV do
    served[ARGV[i]] = true
  end
  local prefix = Key.queue(p, '')
  local scan = redis.call('SSCAN', Key.queues(p), redis.call('HGET', cursors, 'queues') or '0',
    'COUNT', most)
  local gone = {}
  for _, key in ipairs(scan[2]) do
    local name = string.sub(key, #prefix + 1)
    local idle = string.sub(key, 1, #prefix) == prefix and not served[name]
      and redis.call('LLEN', key) == 0
      and redis.call('SCARD', Key.workers_of(p, name)) == 0
    -- A tenant lane is the fair queue's, whose registries are its queue's: an empty lane goes.
    if idle and not string.find(name, '@', 1, true) then
      for _, r in ipairs({Key.started(p, name), Key.finished(p, name), Key.failed(p, name),
          Key.scheduled(p, name), Key.deferred(p, name), Key.canceled(p, name)}) do
        if redis.call('ZCARD', r) > 0 then
          idle = false
          break
        end
      end
    end
    if idle then
      gone[#gone + 1] = key
    end
  end
  remove_all('SREM', Key.queues(p), gone)
  redis.call('HSET', cursors, 'queues', scan[1])
  return {#gone, scan[1] ~= '0' and 1 or 0}
end

if phase == 'groups' then
  local per_group = math.max(1, math.floor(most / 10))
  local scan = redis.call('SSCAN', Key.groups(p), redis.call('HGET', cursors, 'groups') or '0',
    'COUNT', 10)
  local removed = 0
  for _, name in ipairs(scan[2]) do
    local group, field = Key.group(p, name), 'group:' .. name
    local inner = redis.call('SSCAN', group, redis.call('HGET', cursors, field) or '0',
      'COUNT', per_group)
    local gone = {}
    for _, id in ipairs(inner[2]) do
      if redis.call('EXISTS', Key.job(p, id)) == 0 then
        gone[#gone + 1] = id
      end
    end
    remove_all('SREM', group, gone)
    removed = removed + #gone
    if redis.call('EXISTS', group) == 0 then
      redis.call('SREM', Key.groups(p), name)
      redis.call('HDEL', cursors, field)
    elseif inner[1] == '0' then
      redis.call('HDEL', cursors, field)
    else
      redis.call('HSET', cursors, field, inner[1])
    end
  end
  redis.call('HSET', cursors, 'groups', scan[1])
  return {removed, scan[1] ~= '0' and 1 or 0}
end

return redis.error_reply('prune.lua: unknown phase ' .. tostring(phase))
