-- Submit a job: store it pending and queue it at its priority, or hold it in the delayed set until
-- its time, in one step.
-- KEYS[1] job hash, [2] the priority's queue stream, [3] delayed set, [4] pending index,
--     [5] the task's stats hash, [6] (optional) idempotency key
-- ARGV[1] job id, [2] task, [3] payload JSON, [4] priority, [5] max retries, [6] timeout s,
--     [7] run at ms (0: now), [8] idempotency ttl s, [9] request fingerprint, [10] the queue's
--     number (1..3: high, default, low), [11] the submitter ('' for the system itself)
-- A queued entry carries the job itself (its first attempt's token, task, payload, timeout), so
-- that a worker can run it the moment it is delivered (job_begin records the start behind it);
-- the hash keeps the entry's id and queue, so a cancel can take back an entry not yet delivered.
-- Returns {'CREATED', id}; {'EXISTING', id} when the idempotency key already names a job with the
-- same fingerprint (or the job exists: a replayed call); {'CONFLICT', id} when it names one with
-- another fingerprint.
if KEYS[6] then
  local prior = redis.call('GET', KEYS[6])
  if prior then
    local sep = string.find(prior, '|', 1, true)
    local prior_id = string.sub(prior, 1, sep - 1)
    if string.sub(prior, sep + 1) == ARGV[9] then return {'EXISTING', prior_id} end
    return {'CONFLICT', prior_id}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'EXISTING', ARGV[1]} end
local now = now_ms()
local run_at = tonumber(ARGV[7])
if run_at < now then run_at = now end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'task', ARGV[2], 'payload', ARGV[3],
  'priority', ARGV[4], 'max_retries', ARGV[5], 'timeout', ARGV[6], 'status', 'pending',
  'retries', 0, 'attempts', 0, 'created', now, 'run_at', run_at, 'by', ARGV[11] or '')
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('HINCRBY', KEYS[5], 'submitted', 1)
if run_at > now then
  redis.call('ZADD', KEYS[3], run_at, ARGV[4] .. ':' .. ARGV[1])
else
  local entry = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1], 'token', 1, 'task', ARGV[2],
    'payload', ARGV[3], 'timeout', ARGV[6], 'created', now, 'run_at', run_at)
  redis.call('HSET', KEYS[1], 'entry', entry, 'queue', ARGV[10])
end
if KEYS[6] then
  redis.call('SET', KEYS[6], ARGV[1] .. '|' .. ARGV[9], 'EX', tonumber(ARGV[8]))
end
return {'CREATED', ARGV[1]}
