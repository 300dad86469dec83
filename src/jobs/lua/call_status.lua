-- Record a call's status only if it moves the call forward (queued < initiated < ringing <
-- in-progress < a final status), so callbacks delivered out of order or twice never move a
-- call backwards.
--
-- KEYS[1] prosaas:call:<call sid>
-- ARGV[1] status   ARGV[2] its rank   ARGV[3] when (RFC 3339)   ARGV[4] TTL (s)   ARGV[5] details JSON
-- Returns {1, status} when recorded, {0, current status} when it would not move forward.
-- FIXED_KEYS: call
-- FIXED_ARGS: status, rank, at, ttl, details
-- REPLY: recorded, status
local FIXED_KEYS = 1
local FIXED_ARGS = 5
local REPLY = 2
local current = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
if tonumber(ARGV[2]) <= current then
  return {0, redis.call('HGET', KEYS[1], 'status')}
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', ARGV[2], 'updated_at', ARGV[3],
  'details', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, ARGV[1]}
