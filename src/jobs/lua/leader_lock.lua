-- Acquire or renew the scheduler leader lock. Nobody ever deletes it: a leader that stops, or
-- crashes, simply lets it expire.
--
-- KEYS[1] lock key   KEYS[2] cycle counter
-- ARGV[1] owner token   ARGV[2] TTL (ms)   ARGV[3] the highest cycle this scheduler has seen
-- Returns {1, cycle} when acquired now (the counter counts acquisitions), {2, cycle} when renewed
-- (already ours), {0, holder} when another owner holds it.
-- FIXED_KEYS: lock, cycle
-- FIXED_ARGS: token, ttl_ms, seen
-- REPLY: code, value
local FIXED_KEYS = 2
local FIXED_ARGS = 3
local REPLY = 2
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local cycle = redis.call('INCR', KEYS[2])
  -- A Redis that lost its data (a restart without persistence) starts the counter again; a
  -- scheduler that saw a later cycle carries the count on, so it never goes backwards while one
  -- of them lives.
  local seen = tonumber(ARGV[3]) or 0
  if cycle <= seen then
    cycle = seen + 1
    redis.call('SET', KEYS[2], cycle)
  end
  return {1, tostring(cycle)}
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {2, redis.call('GET', KEYS[2]) or '0'}
end
return {0, holder or ''}
