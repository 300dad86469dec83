-- Claim up to N jobs for one worker: pop ids (the worker's inbox first, then the queues in
-- priority order), mark each started as RQ does, and enter it in the started registry with a
-- heartbeat deadline, all in one step. A popped id is never outside both the queue and the
-- started registry, so no two workers can hold it and a crash cannot lose it.
--
-- Standalone Redis only: keys are derived from the prefix inside the script.
-- ARGV[1] RQ prefix with colon   ARGV[2] worker name   ARGV[3] now (RQ timestamp), or '' for
-- Redis's clock when the script runs (a claim sent ahead, behind a blocking wait: waker.rs)
-- ARGV[4] deadline (integer Unix seconds), or with ARGV[3] '' the seconds it is after the run
-- ARGV[5] max jobs   ARGV[6] execution id base (24 hex),
-- or '' for RQ 1.x's entry format: started-registry members are plain job ids (RQ 1.x cannot
-- parse `<id>:<execution id>`) and the executions have no id ('')
-- ARGV[7] the worker's inbox key   ARGV[8] state sequence number (see settle.lua; 0: no decision)
-- ARGV[9] '1' to write RQ's `current_job` on the worker's registration, else ''
-- ARGV[10] number of queues Q   ARGV[11 .. 10+Q] queue names, highest priority first
-- ARGV[11+Q .. 10+2Q] per queue, the most jobs of one tenant that may run at once ('0': no cap;
-- only a capped queue keeps per-tenant running counts)
-- Returns REPLY_HEAD (the ids dropped because their hash was gone, and the worker's paused
-- queues, space-separated), then FIELDS_PER_JOB per job; or {-1} while `rq suspend` holds: no
-- job is taken while rq:suspended exists (RQ's worker checks it before each pop; here the check
-- and the pop are one step, so nothing starts after the flag is set). Ids a wake-up already
-- moved into the worker's inbox wait there for the resume. A worker with nothing running is
-- marked `state=suspended`, as RQ's is.
-- A queue in prosaas:paused (`prosaas jobs pause`) is passed over, its tenant lanes too; an id
-- of it found in the inbox goes back to the head of its queue. The worker learns its paused
-- queues from the reply, so its wake-ups stop blocking on them.
-- FIXED_ARGS: prefix, worker, now, deadline, max, eid_base, inbox, state_seq, current_job,
--   queue_count
-- REPLY_HEAD: dropped, paused
-- FIELDS_PER_JOB: id, eid, queue, data, timeout, retries_left, retry_intervals, result_ttl,
--   failure_ttl, enqueued_at, attempts, enqueued_by, lane, meta, rq_options
-- `rq_options` is '' for a job without RQ's Python-side options (every job prosaas enqueues),
-- else ten lines: the success, failure and stopped callbacks' names, their timeouts ('' for
-- none), RQ's Repeat (`repeats_left`, `repeat_intervals`: a JSON list, one line), RQ 3.0's
-- `webhooks` (JSON, one line) and `rate_limit_key` (last: it may hold anything).
--
-- A queue with tenant lanes (its ring exists, see lanes.lua) is served by stride scheduling:
-- the tenant with the lowest pass goes next, and each job it takes adds STRIDE/weight to its pass
-- (weights from prosaas:fair:<q>:weights, 1 when absent), so tenants with work take turns in
-- proportion to their weights and FIFO within each lane. The queue's own list (jobs without a
-- tenant, and what Python RQ producers push) is one more member of the ring, named ''. A tenant
-- at its cap is passed over, keeping its place.
local FIXED_ARGS = 10
local REPLY_HEAD = 2
local FIELDS_PER_JOB = 15
local p, w, now, deadline = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if now == '' then
  local secs
  now, secs = redis_now()
  deadline = string.format('%d', secs + tonumber(ARGV[4]))
end
local max, base, inbox = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local nq = tonumber(ARGV[10])
-- The queues are ARGV[first_queue .. last_queue]; each one's tenant cap follows nq later.
local first_queue, last_queue = FIXED_ARGS + 1, FIXED_ARGS + nq
-- One EXISTS for both flags and every queue's ring: none of them is there nearly always on a
-- plain queue, and every ring on a fair one. The flags are named once more than there are
-- rings, so the count tells them apart: (queues + 1) per flag that exists, plus the rings that
-- exist (at most `queues`).
local rings_found, flagged
do
  local keys = {}
  for i = first_queue, last_queue do keys[#keys + 1] = Key.fair_ring(ARGV[i]) end
  for _ = 0, nq do
    keys[#keys + 1] = Key.suspended(p)
    keys[#keys + 1] = Key.paused()
  end
  local found = redis.call('EXISTS', unpack(keys))
  rings_found = found % (nq + 1)
  flagged = found > rings_found
end
local paused, suspended = {}, false
if flagged then
  suspended = redis.call('EXISTS', Key.suspended(p)) == 1
  if not suspended then
    for _, q in ipairs(redis.call('SMEMBERS', Key.paused())) do paused[q] = true end
  end
end
if suspended then
  local wkey = Key.worker(p, w)
  if redis.call('SCARD', Key.running(w)) == 0 and redis.call('EXISTS', wkey) == 1
      and tonumber(ARGV[8]) > tonumber(redis.call('HGET', wkey, 'state_seq') or '0') then
    redis.call('HSET', wkey, 'state', 'suspended', 'state_seq', ARGV[8])
  end
  return {-1}
end
local out = {0, ''}
-- Started jobs per queue and lane, added to prosaas:fair:<q>:running at the end (capped queues).
local lanes_started, lanes_order = {}, {}
local capped = {}
local n, o = 0, REPLY_HEAD
-- The last job taken, for the worker's `current_job`.
local last_id
-- Started-registry entries per queue, added with one variadic ZADD each at the end: one call
-- per batch instead of one per job (each redis.call from Lua costs microseconds of Redis CPU).
local wip, wip_order = {}, {}
-- The next attempt count, as a string: a Lua number passed to redis.call or returned is
-- formatted with a "%.14g" snprintf, which costs more than the rest of a job's bookkeeping.
-- Attempt counts are small, so a table of constants answers nearly every time.
local NEXT = {['0'] = '1', ['1'] = '2', ['2'] = '3', ['3'] = '4', ['4'] = '5', ['5'] = '6',
  ['6'] = '7', ['7'] = '8', ['8'] = '9', ['9'] = '10', ['10'] = '11', ['11'] = '12',
  ['12'] = '13', ['13'] = '14', ['14'] = '15', ['15'] = '16'}

-- Returns whether the job was taken (false: its hash is gone, or it was canceled, and the id
-- was dropped).
local function take(id, queue)
  local jkey = Key.job(p, id)
  local h = redis.call('HMGET', jkey, 'data', 'origin', 'timeout', 'retries_left',
    'retry_intervals', 'result_ttl', 'failure_ttl', 'enqueued_at', 'attempts', 'ttl', 'enqueued_by',
    'lane', 'meta', 'status')
  if not h[1] then
    -- The hash is gone (its wait TTL lapsed, or it was deleted): RQ drops such ids too.
    out[1] = out[1] + 1
    return false
  end
  if h[14] == 'canceled' then
    -- Canceled (RQ's `job.cancel()`): RQ takes the id off the queue and enters the job in
    -- rq:canceled:<q>, but an id a wake-up already moved into an inbox is out of its reach.
    -- It never starts; the canceled registry keeps it.
    return false
  end
  local q = h[2] or queue
  if paused[q] then
    -- Moved into the inbox before its queue was paused: back to the head of its queue.
    push_job(p, q, id, h[12], true)
    return false
  end
  n = n + 1
  last_id = id
  local eid = base == '' and '' or base .. string.format('%08x', n)
  local attempts = NEXT[h[9] or '0'] or tostring((tonumber(h[9]) or 0) + 1)
  redis.call('HSET', jkey, 'status', 'started', 'started_at', now, 'last_heartbeat', now,
    'worker_name', w, 'attempts', attempts)
  -- Only a job with a wait TTL has an expiry to drop (RQ PERSISTs on start for the same reason),
  -- and only such a job can have an unstarted marker (see enqueue_dedupe.lua): it has started.
  if h[10] then
    redis.call('PERSIST', jkey)
    redis.call('DEL', Key.unstarted(id))
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
  -- The hash's lane, wherever the id was popped from: the running count follows the job.
  local lane = h[12] or ''
  out[o + 13], out[o + 14] = lane, h[13] or ''
  local rq_options = ''
  if h[11] ~= 'prosaas' then
    -- Only a Python producer sets RQ's callbacks and Repeat: what prosaas enqueues is not read
    -- for them (fields missing from a hash cost a scan of it each, on every job).
    local c = redis.call('HMGET', jkey, 'success_callback_name', 'failure_callback_name',
      'stopped_callback_name', 'success_callback_timeout', 'failure_callback_timeout',
      'stopped_callback_timeout', 'repeats_left', 'repeat_intervals', 'webhooks', 'rate_limit_key')
    -- RQ writes the names of a job without callbacks as '' (1.x) or leaves them out.
    if (c[1] or '') ~= '' or (c[2] or '') ~= '' or (c[3] or '') ~= '' or (c[7] or '') ~= ''
        or (c[9] or '') ~= '' or (c[10] or '') ~= '' then
      rq_options = table.concat({c[1] or '', c[2] or '', c[3] or '', c[4] or '', c[5] or '',
        c[6] or '', c[7] or '', c[8] or '', c[9] or '', c[10] or ''}, '\n')
    end
  end
  out[o + 15] = rq_options
  o = o + FIELDS_PER_JOB
  if lane ~= '' and capped[q] then
    local key = q .. '@' .. lane
    local c = lanes_started[key]
    if not c then
      lanes_order[#lanes_order + 1] = {q, lane}
    end
    lanes_started[key] = (c or 0) + 1
  end
  return true
end

local function drain(list, queue)
  while n < max do
    local asked = max - n
    local ids = redis.call('LPOP', list, asked)
    if not ids then return end
    for _, id in ipairs(ids) do take(id, queue) end
    -- Fewer than asked: the list is empty now (another pop would cost a call to learn it).
    if #ids < asked then return end
  end
end

-- Up to `turns` jobs off one lane; returns how many ids were popped and whether it is empty
-- (known only when it held fewer than asked: a lane emptied exactly is found empty at its next
-- turn, which saves a call per turn).
local function take_turns(list, queue, turns)
  local ids = redis.call('LPOP', list, turns)
  if not ids then return 0, true end
  for _, id in ipairs(ids) do take(id, queue) end
  return #ids, #ids < turns
end

-- Ring entries {pass, tenant} in the order Redis keeps the ring (score, then member), so the
-- simulation below picks exactly what one ZRANGE per turn would. A sorted array read from a
-- moving head: ZRANGE hands entries over sorted, and a served tenant's new pass almost always
-- sorts last, so taking is O(1) and putting back a short binary search.
local function before(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end
local function queue_put(qu, e)
  local lo, hi = qu.head, #qu + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if before(qu[mid], e) then lo = mid + 1 else hi = mid end
  end
  table.insert(qu, lo, e)
end

-- A weight-1 tenant's step in the round robin; a weight-w tenant's is STRIDE / w (weights are
-- at most 1000, so steps stay whole numbers and passes exact far beyond any queue's lifetime).
local STRIDE = 1000000

-- Jobs a tenant takes per turn at least (when the claim has room): one LPOP serves them all,
-- where a turn of one job each made a fair queue of many tenants pay a Redis call per job. The
-- rotation stays fair (each job adds its step to the pass); a tenant arriving with work still
-- goes next.
local QUANTUM = 4

-- Ring entries read at a time, and the most one claim reads (tenants at their cap are passed
-- over, so a claim may read past them; this bounds the walk).
local RING_CHUNK = 128
local RING_MOST = 2048

-- A fair queue's turn-taking, simulated on the ring in memory and written back once: the ring
-- is read in chunks (entries beyond the last read have a pass at least its), each turn pops
-- from one lane, and the new passes go back in one ZADD (emptied lanes in one ZREM).
local function fair_drain(q, cap)
  local ring = Key.fair_ring(q)
  local plain = Key.queue(p, q)
  -- Known without a call when no ring or every ring exists.
  if rings_found == 0 or (rings_found < nq and redis.call('EXISTS', ring) == 0) then
    return drain(plain, q)
  end
  if redis.call('LLEN', plain) > 0 then
    redis.call('ZADD', ring, 'NX', 0, '')
  end
  local state = Key.fair_state(q)
  local vt = tonumber(redis.call('HGET', state, 'vt') or '0') or 0
  local weights, running = Key.fair_weights(q), Key.fair_running(q)
  local weighted = redis.call('EXISTS', weights) == 1
  local strides = {}
  local function stride(t)
    local s = strides[t]
    if not s then
      local weight = (weighted and t ~= '') and tonumber(redis.call('HGET', weights, t) or '1') or 1
      -- Whole numbers: the ring is small enough to be a listpack, where integer scores are
      -- compared without parsing (fractions made every write back cost a parse per member).
      s = math.floor(STRIDE / ((weight and weight > 0) and weight or 1))
      strides[t] = s
    end
    return s
  end
  local pending, loaded, more, boundary = {head = 1}, 0, true, nil
  local function load()
    -- Little more than the turns still wanted: reading (and scoring) the ring costs per entry.
    local size = math.min(RING_CHUNK, math.ceil((max - n) / QUANTUM) + 2)
    local chunk = redis.call('ZRANGE', ring, loaded, loaded + size - 1, 'WITHSCORES')
    for k = 1, #chunk, 2 do
      queue_put(pending, {tonumber(chunk[k + 1]), chunk[k]})
    end
    loaded = loaded + #chunk / 2
    more = #chunk / 2 == size and loaded < RING_MOST
    boundary = more and tonumber(chunk[#chunk]) or nil
  end
  load()
  local moved, emptied = {}, {}
  -- Jobs taken off tenant lanes, subtracted from the lanes' count once per claim.
  local from_lanes = 0
  while n < max do
    local first = pending[pending.head]
    if not first or (boundary and first[1] > boundary) then
      if not more then break end
      load()
    end
    local e = pending[pending.head]
    if not e then break end
    pending.head = pending.head + 1
    local pass, t = e[1], e[2]
    local room = max - n
    if cap > 0 and t ~= '' then
      local busy = tonumber(redis.call('HGET', running, t) or '0') or 0
      room = math.min(room, cap - busy - (lanes_started[q .. '@' .. t] or 0))
    end
    -- A tenant at its cap keeps its pass and sits out the rest of this claim.
    if room > 0 then
      local start, s = math.max(pass, vt), stride(t)
      -- The turns it has before the next in line is due, at least a quantum, taken in one pop.
      local following = pending[pending.head]
      local next_pass = following and following[1] or boundary
      local turns = room
      if next_pass then
        turns = math.min(room, math.max(QUANTUM, math.floor((next_pass - start) / s) + 1))
      end
      local popped, empty = take_turns(lane_list(p, q, t), q, turns)
      if t ~= '' then from_lanes = from_lanes + popped end
      if popped > 0 then vt = start end
      if empty then
        emptied[#emptied + 1] = t
        moved[t] = nil
      else
        -- The entry goes back with its new pass (reused: no garbage per turn for Lua's GC).
        e[1] = start + s * popped
        moved[t] = e[1]
        queue_put(pending, e)
      end
    end
  end
  local zadd = {}
  for t, pass in pairs(moved) do
    zadd[#zadd + 1] = pass
    zadd[#zadd + 1] = t
  end
  -- unpack() is bounded by Lua's C stack: in slices, as for the started registry below.
  for i = 1, #zadd, 2000 do
    redis.call('ZADD', ring, unpack(zadd, i, math.min(i + 1999, #zadd)))
  end
  local keys = {}
  for _, t in ipairs(emptied) do
    -- An empty lane leaves rq:queues, as RQ forgets an emptied queue's list.
    if t ~= '' then keys[#keys + 1] = lane_list(p, q, t) end
  end
  for i = 1, #emptied, 2000 do
    redis.call('ZREM', ring, unpack(emptied, i, math.min(i + 1999, #emptied)))
  end
  for i = 1, #keys, 2000 do
    redis.call('SREM', Key.queues(p), unpack(keys, i, math.min(i + 1999, #keys)))
  end
  lanes_queued(q, -from_lanes)
  redis.call('HSET', state, 'vt', vt)
end

for i = first_queue, last_queue do
  if (tonumber(ARGV[i + nq]) or 0) > 0 then capped[ARGV[i]] = true end
end
drain(inbox, ARGV[first_queue])
local paused_here = {}
for i = first_queue, last_queue do
  if paused[ARGV[i]] then
    paused_here[#paused_here + 1] = ARGV[i]
  elseif n < max then
    fair_drain(ARGV[i], tonumber(ARGV[i + nq]) or 0)
  end
end
out[2] = table.concat(paused_here, ' ')
for _, ql in ipairs(lanes_order) do
  redis.call('HINCRBY', Key.fair_running(ql[1]), ql[2], lanes_started[ql[1] .. '@' .. ql[2]])
end
-- Still inside the one script: no moment exists where a popped id is in neither place.
-- The worker's own set of what it runs (prosaas:worker:<w>:running) gets the same members: if a
-- tool that cannot read them (RQ 1.x's cleanup) drops a dead worker's entries, recovery still
-- finds its jobs there (release_inbox.lua).
local running = Key.running(w)
for _, q in ipairs(wip_order) do
  local members = wip[q]
  -- unpack() is bounded by Lua's C stack; claims are at most a few hundred jobs, but stay safe.
  for i = 1, #members, 2000 do
    redis.call('ZADD', Key.started(p, q), unpack(members, i, math.min(i + 1999, #members)))
  end
  local names = {}
  for i = 2, #members, 2 do names[#names + 1] = members[i] end
  for i = 1, #names, 2000 do
    redis.call('SADD', running, unpack(names, i, math.min(i + 1999, #names)))
  end
end
local wkey = Key.worker(p, w)
-- A state number of 0: the worker is busy in Redis already (the worker knows), nothing to write.
if n > 0 and (ARGV[9] == '1' or ARGV[8] ~= '0') and redis.call('EXISTS', wkey) == 1 then
  -- RQ's `current_job` (RQ <= 2.12's field; its tools read it): the last job claimed. settle.lua
  -- moves it to another running job when this one ends.
  if ARGV[9] == '1' then redis.call('HSET', wkey, 'current_job', last_id) end
  if ARGV[8] ~= '0' and tonumber(ARGV[8]) > tonumber(redis.call('HGET', wkey, 'state_seq') or '0') then
    redis.call('HSET', wkey, 'state', 'busy', 'state_seq', ARGV[8])
  end
end
return out
