-- Send a failed job back to its queue with its retries reset, and take it off the dead letters.
-- KEYS[1] job hash, [2] its priority's queue stream, [3] dead-letter stream, [4] failed index,
--     [5] pending index, [6] job attempts list
-- ARGV[1] job id, [2] the queue's number (1..3)
-- Its entry carries the job, as job_submit's do.
-- Returns {'OK'}, {'ILLEGAL', status} or {'GONE'}.
local j = redis.call('HMGET', KEYS[1], 'status', 'dead_entry', 'attempts', 'task', 'payload',
  'timeout', 'created')
if not j[1] then return {'GONE'} end
if j[1] ~= 'failed' then return {'ILLEGAL', j[1]} end
local now = now_ms()
redis.call('HSET', KEYS[1], 'status', 'pending', 'retries', 0, 'lost', 0, 'run_at', now)
redis.call('HDEL', KEYS[1], 'finished', 'dead_entry')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[6])
if j[2] then redis.call('XDEL', KEYS[3], j[2]) end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], now, ARGV[1])
local entry = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1], 'token', tonumber(j[3]) + 1,
  'task', j[4], 'payload', j[5], 'timeout', j[6], 'created', j[7], 'run_at', now)
redis.call('HSET', KEYS[1], 'entry', entry, 'queue', ARGV[2])
return {'OK'}
