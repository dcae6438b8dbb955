-- No driver this time: schedule the next search with backoff, or give up at the deadline (or
-- now: for a caller that searches once and answers at once, or an order whose dispatch keeps
-- failing, which may still be QUEUED).
-- KEYS[1] order hash, [2] request stream, [3] retry set, [4] the order's event stream,
--     [5] city event stream
-- ARGV[1] order id, [2] stream entry id or '', [3] group, [4] base delay ms, [5] max delay ms,
--     [6] jitter factor in [0, 1), [7] retention s of a finished order, [8] '1' to give up now,
--     [9] the reason given when giving up
-- Returns {'SEARCHING', next attempt ms}, {'NO_DRIVER_FOUND'} or {status} when not searching.
local function ack()
  if ARGV[2] ~= '' then redis.call('XACK', KEYS[2], ARGV[3], ARGV[2]) end
end
local r = redis.call('HMGET', KEYS[1], 'status', 'deadline')
local searching = r[1] == 'SEARCHING' or (r[1] == 'QUEUED' and ARGV[8] == '1')
if not searching then
  ack()
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {r[1] or 'GONE'}
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local deadline_us = tonumber(r[2])
if now_us >= deadline_us or ARGV[8] == '1' then
  local at = string.format('%.0f', now_us)
  redis.call('HSET', KEYS[1], 'status', 'NO_DRIVER_FOUND', 't_NO_DRIVER_FOUND', at,
    'reason', ARGV[9])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 128, '*', 'status', 'NO_DRIVER_FOUND', 'at', at,
    'reason', ARGV[9])
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 100000, '*', 'order', ARGV[1],
    'status', 'NO_DRIVER_FOUND', 'at', at, 'reason', ARGV[9])
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
