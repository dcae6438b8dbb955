-- Cancel a pending job (queued or waiting for its time or its retry); a job that is running or
-- finished is not cancelled. A queued entry that carries the job (job_submit's, job_redrive's) is
-- deleted when no worker has it yet; once one has it, the job is running (a worker runs such an
-- entry the moment it is delivered) and is not cancelled. Other entries queued for the job are
-- skipped when delivered (job_start finds it cancelled).
-- KEYS[1] job hash, [2] delayed set, [3] pending index, [4] cancelled index, [5] job attempts list,
--     [6..8] queue streams high, default, low
-- ARGV[1] job id, [2] retention s of a finished job, [3] the workers' group
-- Returns {'OK'}, {'ILLEGAL', status} or {'GONE'}.
local j = redis.call('HMGET', KEYS[1], 'status', 'priority', 'entry', 'queue')
if not j[1] then return {'GONE'} end
if j[1] ~= 'pending' then return {'ILLEGAL', j[1]} end
if j[3] and j[4] then
  local queue = KEYS[5 + tonumber(j[4])]
  -- No group yet (no worker ever ran): nothing was delivered.
  local held = redis.pcall('XPENDING', queue, ARGV[3], j[3], j[3], 1)
  if type(held) == 'table' and not held.err and #held > 0 then return {'ILLEGAL', 'processing'} end
  redis.call('XDEL', queue, j[3])
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished', now)
redis.call('HDEL', KEYS[1], 'entry')
redis.call('ZREM', KEYS[2], j[2] .. ':' .. ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[2]))
return {'OK'}
