-- Ask the worker running a job to stop it, as RQ's `send_stop_job_command` does: the stop-job
-- command, on the channel of the worker the job hash names. Read and publish in one step, so
-- the command goes to the worker that runs the job now.
--
-- ARGV[1] RQ prefix   ARGV[2] job id (a valid job id: it is put in the JSON as it is)
-- Returns {code, status, receivers}: 1 sent (receivers: subscribers that got it; 0 when no
-- worker listens on that channel), 3 not running (its status given), 0 no such job.
-- FIXED_ARGS: prefix, id
local FIXED_ARGS = 2
local p, id = ARGV[1], ARGV[2]
local h = redis.call('HMGET', Key.job(p, id), 'status', 'worker_name', 'origin')
if not h[1] and not h[3] then
  return {0, '', 0}
end
local status = h[1] or 'queued'
if status ~= 'started' or not h[2] or h[2] == '' then
  return {3, status, 0}
end
local n = redis.call('PUBLISH', Key.pubsub(p, h[2]),
  '{"command": "stop-job", "job_id": "' .. id .. '"}')
return {1, status, n}
