-- Claim up to N jobs for one worker: pop ids (the worker's inbox first, then the queues in
-- priority order), mark each started as RQ does, and enter it in the started registry with a
-- heartbeat deadline, all in one step. A popped id is never outside both the queue and the
-- started registry, so no two workers can hold it and a crash cannot lose it.
--
-- Standalone Redis only: keys are derived from the prefix inside the script.
-- ARGV[1] RQ prefix with colon   ARGV[2] worker name   ARGV[3] now (RQ timestamp)
-- ARGV[4] deadline (integer Unix seconds)   ARGV[5] max jobs   ARGV[6] execution id base (24 hex),
-- or '' for RQ 1.x's entry format: started-registry members are plain job ids (RQ 1.x cannot
-- parse `<id>:<execution id>`) and the executions have no id ('')
-- ARGV[7] the worker's inbox key   ARGV[8] state sequence number (see settle.lua)
-- ARGV[9..] queue names, highest priority first
-- Returns {dropped, id, eid, queue, data, timeout, retries_left, retry_intervals, result_ttl,
--          failure_ttl, enqueued_at, attempts, enqueued_by, ...} (12 fields per job).
local p, w, now, deadline = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max, base, inbox = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local out = {0}
local n, o = 0, 1
-- Started-registry entries per queue, added with one variadic ZADD each at the end: one call
-- per batch instead of one per job (each redis.call from Lua costs microseconds of Redis CPU).
local wip, wip_order = {}, {}
-- The next attempt count, as a string: a Lua number passed to redis.call or returned is
-- formatted with a "%.14g" snprintf, which costs more than the rest of a job's bookkeeping.
-- Attempt counts are small, so a table of constants answers nearly every time.
local NEXT = {['0'] = '1', ['1'] = '2', ['2'] = '3', ['3'] = '4', ['4'] = '5', ['5'] = '6',
  ['6'] = '7', ['7'] = '8', ['8'] = '9', ['9'] = '10', ['10'] = '11', ['11'] = '12',
  ['12'] = '13', ['13'] = '14', ['14'] = '15', ['15'] = '16'}

local function take(id, queue)
  local jkey = p .. 'job:' .. id
  local h = redis.call('HMGET', jkey, 'data', 'origin', 'timeout', 'retries_left',
    'retry_intervals', 'result_ttl', 'failure_ttl', 'enqueued_at', 'attempts', 'ttl', 'enqueued_by')
  if not h[1] then
    -- The hash is gone (its wait TTL lapsed, or it was deleted): RQ drops such ids too.
    out[1] = out[1] + 1
    return
  end
  local q = h[2] or queue
  n = n + 1
  local eid = base == '' and '' or base .. string.format('%08x', n)
  local attempts = NEXT[h[9] or '0'] or tostring((tonumber(h[9]) or 0) + 1)
  redis.call('HSET', jkey, 'status', 'started', 'started_at', now, 'last_heartbeat', now,
    'worker_name', w, 'attempts', attempts)
  -- Only a job with a wait TTL has an expiry to drop (RQ PERSISTs on start for the same reason),
  -- and only such a job can have an unstarted marker (see enqueue_dedupe.lua): it has started.
  if h[10] then
    redis.call('PERSIST', jkey)
    redis.call('DEL', 'prosaas:unstarted:' .. id)
  end
  local members = wip[q]
  if not members then
    members = {}
    wip[q] = members
    wip_order[#wip_order + 1] = q
  end
  members[#members + 1] = deadline
  members[#members + 1] = eid == '' and id or id .. ':' .. eid
  out[o + 1], out[o + 2], out[o + 3], out[o + 4] = id, eid, q, h[1]
  out[o + 5], out[o + 6], out[o + 7], out[o + 8] = h[3] or '', h[4] or '', h[5] or '', h[6] or ''
  out[o + 9], out[o + 10], out[o + 11], out[o + 12] = h[7] or '', h[8] or '', attempts, h[11] or ''
  o = o + 12
end

local function drain(list, queue)
  while n < max do
    local ids = redis.call('LPOP', list, max - n)
    if not ids then return end
    for _, id in ipairs(ids) do take(id, queue) end
  end
end

drain(inbox, ARGV[9])
for i = 9, #ARGV do
  if n >= max then break end
  drain(p .. 'queue:' .. ARGV[i], ARGV[i])
end
-- Still inside the one script: no moment exists where a popped id is in neither place.
-- The worker's own set of what it runs (prosaas:worker:<w>:running) gets the same members: if a
-- tool that cannot read them (RQ 1.x's cleanup) drops a dead worker's entries, recovery still
-- finds its jobs there (release_inbox.lua).
local running = 'prosaas:worker:' .. w .. ':running'
for _, q in ipairs(wip_order) do
  local members = wip[q]
  -- unpack() is bounded by Lua's C stack; claims are at most a few hundred jobs, but stay safe.
  for i = 1, #members, 2000 do
    redis.call('ZADD', p .. 'wip:' .. q, unpack(members, i, math.min(i + 1999, #members)))
  end
  local names = {}
  for i = 2, #members, 2 do names[#names + 1] = members[i] end
  for i = 1, #names, 2000 do
    redis.call('SADD', running, unpack(names, i, math.min(i + 1999, #names)))
  end
end
local wkey = p .. 'worker:' .. w
if n > 0 and redis.call('EXISTS', wkey) == 1
    and tonumber(ARGV[8]) > tonumber(redis.call('HGET', wkey, 'state_seq') or '0') then
  redis.call('HSET', wkey, 'state', 'busy', 'state_seq', ARGV[8])
end
return out
