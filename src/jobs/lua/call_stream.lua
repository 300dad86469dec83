-- A call's one live Media Stream, across calls processes: a lease the stream holds while it is
-- live, then a mark that the call's recording is finalized, so no later stream reopens it.
--
-- KEYS[1] prosaas:call:<call sid>:stream   (the owner token while live; 'finalized' after)
-- ARGV[1] op: 'claim' | 'renew' | 'end' (recorded: mark finalized) | 'release' (nothing recorded)
-- ARGV[2] the stream's owner token (never 'finalized')
-- ARGV[3] ms: the lease (claim, renew) or how long the finalized mark is kept (end)
-- Returns: claim/renew 'owned'; claim 'live' or 'finalized' when another stream has or had the
-- call; renew/end/release 'lost' when another stream took it; end/release 'ok'.
-- FIXED_KEYS: stream
-- FIXED_ARGS: op, owner, ms
local FIXED_KEYS = 1
local FIXED_ARGS = 3
local held = redis.call('GET', KEYS[1])
local op = ARGV[1]
if held and held ~= ARGV[2] then
  if op == 'claim' then
    if held == 'finalized' then return 'finalized' end
    return 'live'
  end
  return 'lost'
end
-- Free (a lease that lapsed in an outage is taken back) or ours.
if op == 'release' then
  if held then redis.call('DEL', KEYS[1]) end
  return 'ok'
end
if op == 'end' then
  redis.call('SET', KEYS[1], 'finalized', 'PX', ARGV[3])
  return 'ok'
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 'owned'
