-- Record the outcomes of a batch of executions, each as RQ records it. An outcome applies only
-- if its started-registry entry is still there (ZMSCORE finds it): if recovery or `rq info`
-- already took the job away, its new state is not overwritten and the outcome is reported as
-- a conflict.
--
-- ARGV[1] RQ prefix   ARGV[2] worker name   ARGV[3] now (RQ timestamp)
-- ARGV[4] the batch's working time in seconds (every outcome but requeues; '' for none)
-- ARGV[5] the worker's state afterwards ('idle', 'busy' or '' for no decision), with
-- ARGV[6] its sequence number: state decisions are numbered in the worker process, and Redis keeps
-- the newest, whatever order concurrent calls arrive in (a claim's 'busy' and a settle's 'idle')
-- ARGV[7] the worker's fair queues with a tenant cap, space-separated (their tenants' running
-- counts drop with each outcome, and a freed slot wakes idle workers)
-- ARGV[8] the minute this batch is counted in (Unix seconds / 60), for the dashboard's series
-- ARGV[9] '1' when claims write RQ's `current_job` (see claim.lua), else ''
-- ARGV[10] '1' to write the counts (the worker's `successful_job_count`, `failed_job_count` and
-- `total_working_time`, the minute series): this batch's with ARGV[11]'s; '' to leave them to a
-- later call and return this batch's instead (a busy worker writes them once a second, not
-- three commands per job)
-- ARGV[11] counts of earlier batches written with these ('' for none), space-separated:
-- successful, failed, their minute, then field and count pairs of its series (their working
-- time is in ARGV[4] already)
-- then FIELDS_PER_OUTCOME per outcome:
--   kind ('ok' | 'repeat' | 'fail' | 'stop' | 'retry' | 'requeue'), id, eid, queue,
--   ttl (ok, repeat: result TTL, fail: failure TTL; -1 = forever; retry: delay in seconds),
--   score (ok, fail: the finished/failed registry score; retry, repeat: the next run's due time,
--   '' for at once),
--   payload (ok, repeat: base64 JSON return value or ''; fail: base64 zlib error text),
--   started (Unix s, float), ended (Unix s, float),
--   retries_left (retry: the new value; repeat: the new repeats_left),
--   error (retry: the attempt's error text; repeat: the new repeat_intervals, JSON),
--   lane (the job's tenant lane, '' for none: a job that goes back to the queue goes back to
--   its lane), wait (the bucket of its enqueue->start wait, see jobs/series.rs; '' unknown),
--   rate_limit (RQ 3.0's rate limit key of a Python-made job, '' for none: its slot is freed
--   when the job leaves the queued and started states, see rate_slots.lua)
-- Numbers arrive and are passed on as strings, never converted: Lua formats a number with a
-- "%.14g" snprintf and parses one with strtod, which cost more per job than the bookkeeping.
-- A job that ends (ok, fail, stop), or succeeds to run again (repeat), moves its waiting
-- dependents on (dependents.lua).
-- Returns one integer per outcome: 1 applied, 0 conflict; then, when the counts were not
-- written (ARGV[10] ''), this batch's: successful, failed, the working time of outcomes that did
-- not apply (to take off ARGV[4]'s), and the series' field and count pairs.
-- FIXED_ARGS: prefix, worker, now, working, state, state_seq, capped, minute, current_job,
--   write_counts, carried
-- FIELDS_PER_OUTCOME: kind, id, eid, queue, ttl, score, payload, started, ended, retries_left,
--   error, lane, wait, rate_limit
local FIXED_ARGS = 11
local FIELDS_PER_OUTCOME = 14
local p, w, now_ts = ARGV[1], ARGV[2], ARGV[3]
local wkey = Key.worker(p, w)
local applied = {}
local ok_count, fail_count = 0, 0
-- Every job this batch names, when claims record `current_job` (ARGV[9]), so that it is moved
-- off a settled one.
local track_current = ARGV[9] == '1'
local settled_ids = {}
-- The dashboard's counts of this batch: '<kind>:<wait bucket>' -> executions ('-': wait unknown).
local minute_counts, minute_fields = {}, {}
-- Working time of outcomes that did not apply, taken off ARGV[4] (rare: conflicts only).
local not_worked = 0

-- Registry writes are grouped per key and sent as one variadic call each: a redis.call from Lua
-- costs microseconds of Redis CPU, so per-batch calls instead of per-job ones are most of what
-- a drained job costs. The script is atomic, so grouping changes no observable order.
-- The list under `key` in `map`, created on first use; `order` keeps keys in first-use order.
local function bucket(map, order, key)
  local b = map[key]
  if not b then
    b = {}
    map[key] = b
    order[#order + 1] = key
  end
  return b
end
local groups, group_order = {}, {}
-- The tenant lanes whose running jobs ended in this batch.
local freed, freed_order = {}, {}
local capped = {}
for q in string.gmatch(ARGV[7], '%S+') do capped[q] = true end
local function group(key) return bucket(groups, group_order, key) end
local function each_slice(list, f)
  -- unpack() is bounded by Lua's C stack; settle batches are small, but stay safe.
  for i = 1, #list, 2000 do f(unpack(list, i, math.min(i + 1999, #list))) end
end

-- The index in ARGV of each outcome's first field, and of its n-th outcome's.
local FIRST = FIXED_ARGS + 1
local function nth(i) return (i - FIRST) / FIELDS_PER_OUTCOME + 1 end
-- Whether the worker is registered, and whether any job this batch ends has dependents or
-- dependencies (most have neither, and then their sets cost nothing more): one EXISTS for both,
-- since each redis.call costs more than its keys. The worker's key is named once more than
-- there are sets, so the count tells the two apart: at least n + 1 with the worker, plus the
-- sets that exist (at most n).
local worker_alive, linked
do
  local keys = {}
  for i = FIRST, #ARGV, FIELDS_PER_OUTCOME do
    local kind = ARGV[i]
    if kind == 'ok' or kind == 'fail' or kind == 'stop' or kind == 'repeat' then
      keys[#keys + 1] = Key.dependents(p, ARGV[i + 1])
      keys[#keys + 1] = Key.dependencies(p, ARGV[i + 1])
    end
  end
  local n = #keys
  for _ = 0, n do keys[#keys + 1] = wkey end
  local found = 0
  each_slice(keys, function(...) found = found + redis.call('EXISTS', ...) end)
  worker_alive = found > n
  linked = (worker_alive and found - n - 1 or found) > 0
end

-- Which outcomes still own their started-registry entry: one ZMSCORE and one ZREM per queue.
local by_queue, queue_order = {}, {}
for i = FIRST, #ARGV, FIELDS_PER_OUTCOME do
  local list = bucket(by_queue, queue_order, ARGV[i + 3])
  list[#list + 1] = i
end
-- The outcomes of one queue that still own their entry, from a ZMSCORE of their members (a
-- plain-id entry does not tell executions apart: it is ours only while the job still names
-- this worker, which recovery and another worker's claim would have changed).
local function owned_of(wip, outcomes, members)
  local scores, owned = {}, {}
  each_slice(members, function(...)
    for _, v in ipairs(redis.call('ZMSCORE', wip, ...)) do scores[#scores + 1] = v end
  end)
  for k, i in ipairs(outcomes) do
    if scores[k] and ARGV[i + 2] == '' and
        redis.call('HGET', Key.job(p, ARGV[i + 1]), 'worker_name') ~= w then
      scores[k] = false
    end
    applied[nth(i)] = scores[k] and 1 or 0
    if scores[k] then owned[#owned + 1] = members[k] end
  end
  return owned
end

for _, q in ipairs(queue_order) do
  local wip = Key.started(p, q)
  local outcomes, members = by_queue[q], {}
  for k, i in ipairs(outcomes) do
    -- An execution without an id was claimed in RQ 1.x's format: its member is the plain id.
    local eid = ARGV[i + 2]
    members[k] = eid == '' and ARGV[i + 1] or ARGV[i + 1] .. ':' .. eid
  end
  if #members == 1 and ARGV[outcomes[1] + 2] ~= '' then
    -- One execution with an id (a worker that runs one job at a time, or an everyday rate):
    -- its ZREM says whether the entry was there, one call instead of a ZMSCORE and a ZREM.
    applied[nth(outcomes[1])] = redis.call('ZREM', wip, members[1])
  else
    local owned = owned_of(wip, outcomes, members)
    if #owned > 0 then
      each_slice(owned, function(...) redis.call('ZREM', wip, ...) end)
    end
  end
  -- Settled or not (a conflict: recovery took it), this worker no longer runs it.
  each_slice(members, function(...) redis.call('SREM', Key.running(w), ...) end)
end

-- A settled job's hash and its result stream are kept alike: for `ttl` seconds, or forever
-- ('-1'). The stream may predate this outcome (an earlier failure's, before a requeue), so
-- "forever" has to remove its old expiry too.
local function keep(jkey, rkey, ttl)
  if ttl == '-1' then
    redis.call('PERSIST', jkey)
    redis.call('PERSIST', rkey)
  else
    redis.call('EXPIRE', jkey, ttl)
    redis.call('EXPIRE', rkey, ttl)
  end
end

local function end_links(id, status, ttl)
  release_dependents(p, id, status, now_ts)
  local dependents, dependencies = Key.dependents(p, id), Key.dependencies(p, id)
  if ttl == '0' then
    redis.call('DEL', dependents, dependencies)
  else
    keep(dependents, dependencies, ttl)
  end
end

-- A success as RQ's handle_job_success records it: status, end time, the result stream's entry.
local function succeeded(jkey, rkey, payload, eid, started, ended)
  redis.call('HSET', jkey, 'status', 'finished', 'ended_at', now_ts, 'last_heartbeat', now_ts)
  if payload ~= '' then
    redis.call('XADD', rkey, 'MAXLEN', '~', '10', '*', 'type', '1', 'worker_name', w,
      'return_value', payload, 'execution_id', eid, 'execution_started_at', started,
      'execution_ended_at', ended)
  else
    redis.call('XADD', rkey, 'MAXLEN', '~', '10', '*', 'type', '1', 'worker_name', w,
      'execution_id', eid, 'execution_started_at', started, 'execution_ended_at', ended)
  end
end

-- Enters `id` in a final registry (finished or failed) with `score`, grouped per key.
local function enter(registry, score, id)
  local list = group(registry)
  list[#list + 1] = score
  list[#list + 1] = id
end

for i = FIRST, #ARGV, FIELDS_PER_OUTCOME do
  local kind, id, eid, q, ttl, score, payload, started, ended, left, err, lane, wait, limit =
    unpack(ARGV, i, i + FIELDS_PER_OUTCOME - 1)
  local jkey, rkey = Key.job(p, id), Key.results(p, id)
  if track_current then settled_ids[id] = true end
  if applied[nth(i)] ~= 1 then
    if kind ~= 'requeue' then
      not_worked = not_worked + (tonumber(ended) - tonumber(started))
    end
  else
    -- The series counts a stop as a failure and a repeat as a success (the dashboard knows ok,
    -- fail, retry, requeue).
    local counted = (kind == 'stop' and 'fail') or (kind == 'repeat' and 'ok') or kind
    local field = counted .. ':' .. (wait == '' and '-' or wait)
    if not minute_counts[field] then
      minute_counts[field] = 0
      minute_fields[#minute_fields + 1] = field
    end
    minute_counts[field] = minute_counts[field] + 1
    if lane ~= '' and capped[q] then
      lane_done(q, lane)
      local key = q .. '@' .. lane
      if not freed[key] then
        freed[key] = true
        freed_order[#freed_order + 1] = {q, lane}
      end
    end
    if kind == 'ok' then
      ok_count = ok_count + 1
      if ttl == '0' then
        redis.call('DEL', jkey, rkey)
      else
        succeeded(jkey, rkey, payload, eid, started, ended)
        keep(jkey, rkey, ttl)
        enter(Key.finished(p, q), score, id)
      end
      if linked then end_links(id, 'finished', ttl) end
    elseif kind == 'repeat' then
      -- RQ's Repeat (2.2+): the success is recorded as above but nothing expires (RQ's
      -- Repeat.schedule stands in for Job.cleanup), then the job goes again with one run less.
      ok_count = ok_count + 1
      if ttl ~= '0' then
        succeeded(jkey, rkey, payload, eid, started, ended)
        if ttl == '-1' then
          redis.call('PERSIST', rkey)
          enter(Key.finished(p, q), '+inf', id)
        else
          redis.call('EXPIRE', rkey, ttl)
          enter(Key.finished(p, q), string.format('%d', math.floor(tonumber(ended)) + tonumber(ttl)), id)
        end
      end
      if linked then release_dependents(p, id, 'finished', now_ts) end
      redis.call('HSET', jkey, 'repeats_left', left, 'repeat_intervals', err)
      if score == '' then
        redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', now_ts)
        push_job(p, q, id, lane, false)
      else
        redis.call('HSET', jkey, 'status', 'scheduled')
        redis.call('ZADD', Key.scheduled(p, q), score, id)
      end
    elseif kind == 'fail' or kind == 'stop' then
      -- A stop (RQ's stop-job command) ends as a failure does, with status `stopped`.
      fail_count = fail_count + 1
      redis.call('HSET', jkey, 'status', kind == 'stop' and 'stopped' or 'failed', 'ended_at',
        now_ts, 'last_heartbeat', now_ts)
      redis.call('XADD', rkey, 'MAXLEN', '~', '10', '*', 'type', '2', 'worker_name', w,
        'exc_string', payload, 'execution_id', eid, 'execution_started_at', started,
        'execution_ended_at', ended)
      keep(jkey, rkey, ttl)
      enter(Key.failed(p, q), score, id)
      if linked then end_links(id, kind == 'stop' and 'stopped' or 'failed', ttl) end
    elseif kind == 'retry' then
      fail_count = fail_count + 1
      if score == '' then
        redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', now_ts, 'retries_left', left,
          'last_error', err)
        -- RQ 2.x's Retry(enqueue_at_front=True), read only here: retries are the rare path.
        push_job(p, q, id, lane, redis.call('HGET', jkey, 'enqueue_at_front_on_retry') == '1')
      else
        redis.call('HSET', jkey, 'status', 'scheduled', 'retries_left', left, 'last_error', err)
        redis.call('ZADD', Key.scheduled(p, q), score, id)
      end
    else -- requeue: put back, untouched, at the head of its queue (shutdown)
      redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', now_ts)
      push_job(p, q, id, lane, true)
    end
    -- Queued again (a requeue, an immediate retry or repeat), it keeps its slot, as in RQ.
    if limit ~= '' and kind ~= 'requeue' and
        not ((kind == 'retry' or kind == 'repeat') and score == '') then
      release_rate_slot(p, limit, id, ended, now_ts)
    end
  end
end

-- A tenant at its cap waits for its running jobs to end; idle workers would otherwise see
-- the freed slot only at their next poll. Once per lane per batch.
for _, ql in ipairs(freed_order) do
  if redis.call('LLEN', lane_list(p, ql[1], ql[2])) > 0 then
    ring_bell(ql[1])
  end
end

for _, key in ipairs(group_order) do
  each_slice(groups[key], function(...) redis.call('ZADD', key, ...) end)
end

local write_counts = ARGV[10] == '1'
-- Earlier batches' counts, written with this one's (the caller sends them at most once a
-- second, so parsing them costs nothing per job).
local carried = {}
for token in string.gmatch(ARGV[11], '%S+') do carried[#carried + 1] = token end
local carried_minute = carried[3]
if write_counts and carried_minute then
  ok_count = ok_count + tonumber(carried[1])
  fail_count = fail_count + tonumber(carried[2])
end

if worker_alive then
  if write_counts then
    if ok_count > 0 then redis.call('HINCRBY', wkey, 'successful_job_count', ok_count) end
    if fail_count > 0 then redis.call('HINCRBY', wkey, 'failed_job_count', fail_count) end
    if not_worked == 0 then
      if ARGV[4] ~= '' then redis.call('HINCRBYFLOAT', wkey, 'total_working_time', ARGV[4]) end
    elseif ARGV[4] ~= '' and tonumber(ARGV[4]) - not_worked > 0 then
      redis.call('HINCRBYFLOAT', wkey, 'total_working_time', tonumber(ARGV[4]) - not_worked)
    end
  end
  -- RQ's `current_job` (when claims write it, see claim.lua): a job still running, if any.
  local current = track_current and redis.call('HGET', wkey, 'current_job')
  if current and settled_ids[current] then
    local other = redis.call('SRANDMEMBER', Key.running(w))
    if other then
      redis.call('HSET', wkey, 'current_job', string.match(other, '^[^:]+'))
    else
      redis.call('HDEL', wkey, 'current_job')
    end
  end
  if ARGV[5] ~= '' and tonumber(ARGV[6]) > tonumber(redis.call('HGET', wkey, 'state_seq') or '0') then
    redis.call('HSET', wkey, 'state', ARGV[5], 'state_seq', ARGV[6])
  end
end

if not write_counts then
  local out = applied
  out[#out + 1] = ok_count
  out[#out + 1] = fail_count
  out[#out + 1] = not_worked == 0 and '0' or tostring(not_worked)
  for _, field in ipairs(minute_fields) do
    out[#out + 1] = field
    out[#out + 1] = minute_counts[field]
  end
  return out
end

-- The dashboard's per-minute series (prosaas:minute:<m>): one HINCRBY per kind and wait bucket.
-- The key is kept two hours; its expiry is set when a field is created (every key starts so),
-- not on every call.
local function count_minute(m, fields, counts)
  local key = Key.minute(m)
  local new_field = false
  for _, field in ipairs(fields) do
    local n = counts[field]
    if redis.call('HINCRBY', key, field, n) == n then new_field = true end
  end
  if new_field then redis.call('EXPIRE', key, 7200) end
end
if carried_minute then
  -- Carried counts of this batch's minute join its own; an earlier minute's go to their key.
  local fields, counts = minute_fields, minute_counts
  if carried_minute ~= ARGV[8] then fields, counts = {}, {} end
  for k = 4, #carried - 1, 2 do
    local field, n = carried[k], tonumber(carried[k + 1])
    if not counts[field] then
      counts[field] = 0
      fields[#fields + 1] = field
    end
    counts[field] = counts[field] + n
  end
  if carried_minute ~= ARGV[8] then count_minute(carried_minute, fields, counts) end
end
count_minute(ARGV[8], minute_fields, minute_counts)
return applied
