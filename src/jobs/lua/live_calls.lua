-- Publish one calls process's report of its live calls, and drop the reports of processes that
-- stopped reporting (killed, or moved away): without that, every calls process ever started
-- would keep a field while any other still reports.
--
-- KEYS[1] prosaas:calls:live
-- ARGV[1] process   ARGV[2] report (JSON with "at", Unix seconds)   ARGV[3] now (Unix seconds)
-- ARGV[4] seconds after which a report is stale   ARGV[5] the key's TTL (s)
-- Returns the number of stale reports dropped.
-- FIXED_KEYS: live_calls
-- FIXED_ARGS: process, report, now, stale_after, ttl
local FIXED_KEYS = 1
local FIXED_ARGS = 5
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
local now, stale, dropped = tonumber(ARGV[3]), tonumber(ARGV[4]), 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, report = pcall(cjson.decode, all[i + 1])
  local at = ok and type(report) == 'table' and tonumber(report['at']) or nil
  if not at or now - at > stale then
    redis.call('HDEL', KEYS[1], all[i])
    dropped = dropped + 1
  end
end
return dropped
