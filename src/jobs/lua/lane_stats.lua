-- A queue's tenant lanes as health, metrics and `jobs stats` show them: how many lanes hold
-- jobs and how many jobs they hold (exact, with any number of lanes), the tenant whose oldest
-- job has waited longest, and the busiest tenants (queued + running) with their numbers.
-- Read-only; an empty answer for a queue without lanes.
--
-- Bounded for callers that anyone may trigger: at most ARGV[4] lanes and ARGV[5] started jobs
-- are looked at for the tenants listed and the oldest (complete = 0 says some were not); past
-- that the totals come from the ring's size and the lanes' kept count. Running counts come from the started registry
-- (what runs now, whatever keeps counts), which holds no more than the workers' concurrency.
--
-- ARGV[1] RQ prefix   ARGV[2] queue   ARGV[3] tenants to list   ARGV[4] most lanes to look at
-- ARGV[5] most started jobs to look at   ARGV[6] '1' when the queue is configured fair
-- Returns {lanes, queued, complete, oldest enqueued_at or '', its tenant or '',
--          then per listed tenant: tenant, queued, running, oldest enqueued_at or ''}.
-- FIXED_ARGS: prefix, queue, top, most_lanes, most_started, fair
-- REPLY_HEAD: lanes, queued, complete, oldest_at, oldest_tenant
-- FIELDS_PER_TENANT: tenant, queued, running, oldest_at
local FIXED_ARGS = 6
local REPLY_HEAD = 5
local FIELDS_PER_TENANT = 4
local p, q, top, most = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local ring = Key.fair_ring(q)
local rows, by_tenant = {}, {}
local lanes, queued, oldest_at, oldest_t = 0, 0, '', ''
for _, t in ipairs(redis.call('ZRANGE', ring, 0, most - 1)) do
  if t ~= '' then
    local lane = lane_list(p, q, t)
    local depth = redis.call('LLEN', lane)
    if depth > 0 then
      lanes, queued = lanes + 1, queued + depth
      local id = redis.call('LINDEX', lane, 0)
      local at = id and redis.call('HGET', Key.job(p, id), 'enqueued_at') or ''
      local row = {t, depth, 0, at}
      rows[#rows + 1], by_tenant[t] = row, row
      -- RQ's timestamps are fixed-width UTC: text order is time order.
      if at ~= '' and (oldest_at == '' or at < oldest_at) then
        oldest_at, oldest_t = at, t
      end
    end
  end
end
local in_ring = redis.call('ZCARD', ring)
local complete = in_ring <= most and 1 or 0
if complete == 0 then
  -- More lanes than one read walks: the totals come from the ring's size and the count the
  -- moving scripts keep (lanes.lua), exact whatever the number of lanes.
  lanes = in_ring - (redis.call('ZSCORE', ring, '') and 1 or 0)
  queued = math.max(queued, tonumber(redis.call('GET', Key.fair_queued(q)) or '0') or 0)
end
if ARGV[6] ~= '1' and redis.call('EXISTS', ring) == 0 then
  -- Not a fair queue, and no lanes left from when it was: no walk of its started jobs.
  return {0, 0, 1, '', ''}
end
local wip = Key.started(p, q)
local most_started = tonumber(ARGV[5])
if redis.call('ZCARD', wip) > most_started then
  complete = 0
end
for _, member in ipairs(redis.call('ZRANGE', wip, 0, most_started - 1)) do
  local id = string.match(member, '^[^:]+')
  local t = redis.call('HGET', Key.job(p, id), 'lane')
  if t and t ~= '' then
    local row = by_tenant[t]
    if not row then
      row = {t, 0, 0, ''}
      rows[#rows + 1], by_tenant[t] = row, row
    end
    row[3] = row[3] + 1
  end
end
table.sort(rows, function(a, b)
  local x, y = a[2] + a[3], b[2] + b[3]
  if x ~= y then return x > y end
  return a[1] < b[1]
end)
local out = {lanes, queued, complete, oldest_at, oldest_t}
for i = 1, math.min(top, #rows) do
  local r = rows[i]
  out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = r[1], r[2], r[3], r[4]
end
return out
