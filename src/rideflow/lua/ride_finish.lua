-- End a ride (cancel or complete) and give its driver back to the pool when they can drive.
-- KEYS[1] ride hash, [2] city pool, [3] city seen set, [4] retry set, [5] the ride's event stream,
--     [6] (optional) driver hash
-- ARGV[1] ride id, [2] target status, [3] comma-separated statuses it may leave,
--     [4] the driver the caller read on the ride ('' for none), [5] staleness window ms,
--     [6] retention s of a finished ride
-- Returns {'OK', at us}, {'ILLEGAL', status}, {'CHANGED'} when the ride's driver moved under
-- the caller (read again and retry), or {'GONE'}.
local r = redis.call('HMGET', KEYS[1], 'status', 'driver')
if not r[1] then return {'GONE'} end
if not string.find(',' .. ARGV[3] .. ',', ',' .. r[1] .. ',', 1, true) then
  return {'ILLEGAL', r[1]}
end
if (r[2] or '') ~= ARGV[4] then return {'CHANGED'} end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local at = string.format('%.0f', now_us)
redis.call('HSET', KEYS[1], 'status', ARGV[2], 't_' .. ARGV[2], at)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
redis.call('XADD', KEYS[5], 'MAXLEN', '~', 64, '*', 'status', ARGV[2], 'at', at, 'driver', ARGV[4])
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[6]))
redis.call('ZREM', KEYS[4], ARGV[1])
if KEYS[6] then
  local d = redis.call('HMGET', KEYS[6], 'status', 'ride', 'lat', 'lng')
  if d[2] == ARGV[1] then
    redis.call('HSET', KEYS[6], 'ride', '')
    local seen = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[4]) or '0')
    local fresh_after = math.floor(now_us / 1000) - tonumber(ARGV[5])
    if d[1] == 'online' and d[3] and seen >= fresh_after then
      redis.call('GEOADD', KEYS[2], d[4], d[3], ARGV[4])
    end
  end
end
return {'OK', at}
