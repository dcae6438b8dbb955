-- No driver this time: schedule the next search with backoff, or give up at the deadline (or
-- now: for a caller that searches once and answers at once, or an order whose dispatch keeps
-- failing, which may still be QUEUED).
-- KEYS[1] order hash, [2] request stream, [3] retry set, [4] the order's event stream,
--     [5] city event stream
-- ARGV[1] order events cap, [2] city events cap, [3] order id, [4] stream entry id or '',
--     [5] group, [6] base delay ms, [7] max delay ms, [8] jitter factor in [0, 1), [9] retention
--     s of a finished order, [10] '1' to give up now, [11] the reason given when giving up
-- Returns {'SEARCHING', next attempt ms}, {'NO_DRIVER_FOUND'}, or {status} (or {'GONE'}) when
-- the order is not searching (its entry is acknowledged and its retry dropped then).
local order_id, give_up = ARGV[3], ARGV[10] == '1'
local function ack()
  if ARGV[4] ~= '' then redis.call('XACK', KEYS[2], ARGV[5], ARGV[4]) end
end
local r = redis.call('HMGET', KEYS[1], 'status', 'deadline')
if not (r[1] == 'SEARCHING' or (r[1] == 'QUEUED' and give_up)) then
  ack()
  redis.call('ZREM', KEYS[3], order_id)
  return {r[1] or 'GONE'}
end
local now = now_us()
local deadline_us = tonumber(r[2])
if now >= deadline_us or give_up then
  local at = us_text(now)
  redis.call('HSET', KEYS[1], 'status', 'NO_DRIVER_FOUND', 't_NO_DRIVER_FOUND', at,
    'reason', ARGV[11])
  emit(KEYS[4], KEYS[5], ARGV[1], ARGV[2], order_id, 'status', 'NO_DRIVER_FOUND', 'at', at,
    'reason', ARGV[11])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[9]))
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[9]))
  redis.call('ZREM', KEYS[3], order_id)
  ack()
  return {'NO_DRIVER_FOUND'}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local delay = math.min(tonumber(ARGV[7]), tonumber(ARGV[6]) * 2 ^ (attempts - 1))
delay = delay * (1 - 0.5 * tonumber(ARGV[8]))
local next_ms = math.min(math.floor(now / 1000 + delay), math.ceil(deadline_us / 1000))
redis.call('ZADD', KEYS[3], next_ms, order_id)
ack()
return {'SEARCHING', next_ms}
