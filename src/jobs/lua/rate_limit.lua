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
-- then per job: id, eid, queue, lane, bucket count B, then B x (key, interval ms, burst, name)
-- Returns per job: '' (run now) or the name of the limit that deferred it, then its slot (ms).
local p, w, now, early = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local running = 'prosaas:worker:' .. w .. ':running'
local out = {}
local i = 5
while i <= #ARGV do
  local id, eid, q, lane, nb = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local first = i + 5
  i = first + nb * 4
  local jkey = p .. 'job:' .. id
  local held = tonumber(redis.call('HGET', jkey, 'rate_slot') or '')
  local slot, why = now, ''
  if held and held <= now + early then
    -- It was deferred before, to a slot it reserved then: that slot is its turn.
    redis.call('HDEL', jkey, 'rate_slot', 'deferred_reason')
  else
    local tats = {}
    for b = first, first + (nb - 1) * 4, 4 do
      local interval, burst = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
      local tat = math.max(tonumber(redis.call('GET', ARGV[b]) or '') or now, now)
      tats[#tats + 1] = tat
      local s = tat - (burst - 1) * interval
      if s > slot then
        slot, why = s, ARGV[b + 3]
      end
    end
    local k = 0
    for b = first, first + (nb - 1) * 4, 4 do
      k = k + 1
      local interval = tonumber(ARGV[b + 1])
      local tat = math.max(tats[k], slot) + interval
      redis.call('SET', ARGV[b], string.format('%.3f', tat), 'PX',
        string.format('%d', math.ceil(tat - now + interval)))
    end
  end
  if slot <= now then
    out[#out + 1] = ''
    out[#out + 1] = '0'
  else
    local member = eid == '' and id or id .. ':' .. eid
    -- Only a claim this worker still holds is undone (recovery cannot have taken it yet, but
    -- the registry is the truth, as in settle.lua).
    if redis.call('ZREM', p .. 'wip:' .. q, member) == 1 then
      redis.call('SREM', running, member)
      local attempts = tonumber(redis.call('HGET', jkey, 'attempts') or '1') or 1
      -- Back to how it was before the claim: not started, by nobody.
      redis.call('HDEL', jkey, 'started_at', 'last_heartbeat', 'worker_name')
      redis.call('HSET', jkey, 'status', 'scheduled', 'attempts', math.max(attempts - 1, 0),
        'rate_slot', string.format('%d', slot),
        'deferred_reason', 'rate limit ' .. why)
      redis.call('ZADD', p .. 'scheduled:' .. q, string.format('%.3f', slot / 1000), id)
      lane_done(q, lane)
    end
    out[#out + 1] = why
    out[#out + 1] = string.format('%d', slot)
  end
end
return out
