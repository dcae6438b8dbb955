-- Move an order along its state machine: the driver's steps (arriving, picked up, complete or
-- delivered) and the customer's cancel. A final step frees the driver: a pending offer is
-- withdrawn (lease released, no longer due) and the driver returns to the pool when they can drive.
-- KEYS[1] order hash, [2] city pool, [3] city seen set, [4] retry set, [5] the order's event
--     stream, [6] city event stream, [7] the order's excluded drivers; when the order has a
--     driver: [8] driver hash, [9] driver lease, [10] the pending offer's hash, [11] offers-due set
-- ARGV[1] order id, [2] target status, [3] comma-separated statuses it may leave, [4] the driver
--     the caller read on the order ('' for none), [5] the offer the caller read ('' for none),
--     [6] the driver making the step ('' for the customer), [7] '1' when the step is final,
--     [8] staleness window ms, [9] retention s of a finished order
-- Returns {'OK', at us}, {'ILLEGAL', status}, {'NOT_YOURS', driver}, {'CHANGED'} when the
-- order's driver or offer moved under the caller (read again and retry), or {'GONE'}.
local r = redis.call('HMGET', KEYS[1], 'status', 'driver', 'offer')
if not r[1] then return {'GONE'} end
if (r[2] or '') ~= ARGV[4] or (r[3] or '') ~= ARGV[5] then return {'CHANGED'} end
if not string.find(',' .. ARGV[3] .. ',', ',' .. r[1] .. ',', 1, true) then
  return {'ILLEGAL', r[1]}
end
if ARGV[6] ~= '' and ARGV[6] ~= ARGV[4] then return {'NOT_YOURS', ARGV[4]} end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local at = string.format('%.0f', now_us)
local target, driver, offer = ARGV[2], ARGV[4], ARGV[5]
redis.call('HSET', KEYS[1], 'status', target, 't_' .. target, at)
local withdrawn = (ARGV[7] == '1' and r[1] == 'OFFERED') and offer or ''
redis.call('XADD', KEYS[5], 'MAXLEN', '~', 128, '*', 'status', target, 'at', at, 'driver', driver,
  'offer', withdrawn)
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 100000, '*', 'order', ARGV[1], 'status', target,
  'at', at, 'driver', driver, 'offer', withdrawn)
if ARGV[7] ~= '1' then return {'OK', at} end
local retain = tonumber(ARGV[9])
redis.call('EXPIRE', KEYS[1], retain)
redis.call('EXPIRE', KEYS[5], retain)
redis.call('EXPIRE', KEYS[7], retain)
redis.call('ZREM', KEYS[4], ARGV[1])
if driver == '' then return {'OK', at} end
if r[1] == 'OFFERED' and offer ~= '' then
  redis.call('HSET', KEYS[10], 'status', 'WITHDRAWN', 'answered', at)
  redis.call('ZREM', KEYS[11], offer)
  local lease = redis.call('GET', KEYS[9])
  if lease and string.sub(lease, -(#offer + 1)) == '|' .. offer then redis.call('DEL', KEYS[9]) end
end
local d = redis.call('HMGET', KEYS[8], 'status', 'order', 'lat', 'lng')
if d[2] == ARGV[1] then
  redis.call('HSET', KEYS[8], 'order', '', 'offer', '')
  local seen = tonumber(redis.call('ZSCORE', KEYS[3], driver) or '0')
  local fresh_after = math.floor(now_us / 1000) - tonumber(ARGV[8])
  if d[1] == 'online' and d[3] and seen >= fresh_after then
    redis.call('GEOADD', KEYS[2], d[4], d[3], driver)
  end
end
return {'OK', at}
