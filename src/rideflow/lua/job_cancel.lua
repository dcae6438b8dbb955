-- Cancel a pending job (queued or waiting for its time or its retry); a job that is running or
-- finished is not cancelled. An entry already queued for it is skipped when delivered.
-- KEYS[1] job hash, [2] delayed set, [3] pending index, [4] cancelled index, [5] job attempts list
-- ARGV[1] job id, [2] retention s of a finished job
-- Returns {'OK'}, {'ILLEGAL', status} or {'GONE'}.
local j = redis.call('HMGET', KEYS[1], 'status', 'priority')
if not j[1] then return {'GONE'} end
if j[1] ~= 'pending' then return {'ILLEGAL', j[1]} end
local now = now_ms()
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished', now)
redis.call('ZREM', KEYS[2], j[2] .. ':' .. ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[2]))
return {'OK'}
