-- Rate limits, checked right after a claim for the claimed jobs that a limit covers: each job
-- either runs now or is deferred to the moment its limits allow, in one step.
--
-- Each limit is a GCRA bucket (one key holding its theoretical arrival time, in ms): a job may
-- start at `slot = max(now, tat - (burst - 1) * interval)` over all its buckets, and reserves
-- that slot in each (tat = max(tat, slot) + interval). A job whose slot is in the future is
-- moved out of the started registry into the scheduled registry at its slot, status
-- `scheduled`, with its claim undone (attempts as before, its tenant's running count down), so
-- it neither fails, nor spends a retry, nor is polled: promotion puts it back on its queue (or
-- lane) when the slot comes, and it runs then on the slot it already holds (`rate_slot`), without
-- reserving again. The jobs behind it are not held up: it has left the queue.
--
-- ARGV[1] RQ prefix   ARGV[2] worker name   ARGV[3] now (ms, Redis's clock)   ARGV[4] tolerance (ms)
-- then per job FIELDS_PER_JOB (its buckets' count last), followed by FIELDS_PER_BUCKET per bucket
-- Returns per job FIELDS_PER_RESULT: the limit that deferred it ('' to run now), its slot (ms).
-- FIXED_ARGS: prefix, worker, now_ms, tolerance_ms
-- FIELDS_PER_JOB: id, eid, queue, lane, buckets
-- FIELDS_PER_BUCKET: key, interval_ms, burst, name
-- FIELDS_PER_RESULT: limit, slot_ms
local FIXED_ARGS = 4
local FIELDS_PER_JOB = 5
local FIELDS_PER_BUCKET = 4
local FIELDS_PER_RESULT = 2
local p, w, now, early = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local running = Key.running(w)
local out = {}
local i = FIXED_ARGS + 1
while i <= #ARGV do
  local id, eid, q, lane, nb = unpack(ARGV, i, i + FIELDS_PER_JOB - 1)
  nb = tonumber(nb)
  local first = i + FIELDS_PER_JOB
  local last = first + (nb - 1) * FIELDS_PER_BUCKET
  i = first + nb * FIELDS_PER_BUCKET
  local jkey = Key.job(p, id)
  local held = tonumber(redis.call('HGET', jkey, 'rate_slot') or '')
  local slot, why = now, ''
  if held and held <= now + early then
    -- It was deferred before, to a slot it reserved then: that slot is its turn.
    redis.call('HDEL', jkey, 'rate_slot', 'deferred_reason')
  else
    local tats = {}
    for b = first, last, FIELDS_PER_BUCKET do
      local interval, burst = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
      local tat = math.max(tonumber(redis.call('GET', ARGV[b]) or '') or now, now)
      tats[#tats + 1] = tat
      local s = tat - (burst - 1) * interval
      if s > slot then
        slot, why = s, ARGV[b + 3]
      end
    end
    local k = 0
    for b = first, last, FIELDS_PER_BUCKET do
      k = k + 1
      local interval = tonumber(ARGV[b + 1])
      local tat = math.max(tats[k], slot) + interval
      redis.call('SET', ARGV[b], string.format('%.3f', tat), 'PX',
        string.format('%d', math.ceil(tat - now + interval)))
    end
  end
  local n = #out
  if slot <= now then
    out[n + 1], out[n + FIELDS_PER_RESULT] = '', '0'
  else
    local member = eid == '' and id or id .. ':' .. eid
    -- Only a claim this worker still holds is undone (recovery cannot have taken it yet, but
    -- the registry is the truth, as in settle.lua).
    if redis.call('ZREM', Key.started(p, q), member) == 1 then
      redis.call('SREM', running, member)
      local attempts = tonumber(redis.call('HGET', jkey, 'attempts') or '1') or 1
      -- Back to how it was before the claim: not started, by nobody.
      redis.call('HDEL', jkey, 'started_at', 'last_heartbeat', 'worker_name')
      redis.call('HSET', jkey, 'status', 'scheduled', 'attempts', math.max(attempts - 1, 0),
        'rate_slot', string.format('%d', slot),
        'deferred_reason', 'rate limit ' .. why)
      redis.call('ZADD', Key.scheduled(p, q), string.format('%.3f', slot / 1000), id)
      lane_done(q, lane)
    end
    out[n + 1], out[n + FIELDS_PER_RESULT] = why, string.format('%d', slot)
  end
end
return out
