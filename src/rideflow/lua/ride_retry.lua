-- No driver this time: schedule the next search with backoff, or give up at the deadline.
-- KEYS[1] ride hash, [2] request stream, [3] retry set, [4] the ride's event stream
-- ARGV[1] ride id, [2] stream entry id or '', [3] group, [4] base delay ms, [5] max delay ms,
--     [6] jitter factor in [0, 1), [7] retention s of a finished ride
-- Returns {'SEARCHING', next attempt ms}, {'NO_DRIVER_FOUND'} or {status} when not searching.
local function ack()
  if ARGV[2] ~= '' then redis.call('XACK', KEYS[2], ARGV[3], ARGV[2]) end
end
local r = redis.call('HMGET', KEYS[1], 'status', 'deadline')
if r[1] ~= 'SEARCHING' then
  ack()
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {r[1] or 'GONE'}
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local deadline_us = tonumber(r[2])
if now_us >= deadline_us then
  redis.call('HSET', KEYS[1], 'status', 'NO_DRIVER_FOUND',
    't_NO_DRIVER_FOUND', string.format('%.0f', now_us),
    'reason', 'no available driver within the search radius before the deadline')
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 64, '*', 'status', 'NO_DRIVER_FOUND',
    'at', string.format('%.0f', now_us),
    'reason', 'no available driver within the search radius before the deadline')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[7]))
  redis.call('ZREM', KEYS[3], ARGV[1])
  ack()
  return {'NO_DRIVER_FOUND'}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local delay = math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ (attempts - 1))
delay = delay * (1 - 0.5 * tonumber(ARGV[6]))
local next_ms = math.min(math.floor(now_us / 1000 + delay), math.ceil(deadline_us / 1000))
redis.call('ZADD', KEYS[3], next_ms, ARGV[1])
ack()
return {'SEARCHING', next_ms}
