-- Reserve the first eligible candidate for a searching order and offer it the order, in one step.
-- Eligible: in the city's pool, seen within the staleness window, online, holding no order, not
-- excluded from this order, and its lease free (SET NX PX). The offer carries a fencing token
-- from the city's counter and a deadline; it is due in the city's deadline set.
-- KEYS[1] order hash, [2] city pool (GEO), [3] city seen set, [4] request stream, [5] retry set,
--     [6] the order's event stream, [7] city event stream, [8] city offers-due set,
--     [9] city fencing counter, [10] the order's excluded drivers, [11] the new offer's hash,
--     [12..] per candidate, in ARGV order: driver hash, driver lease
-- ARGV[1] order id, [2] stream entry id or '', [3] group, [4] staleness window ms, [5] offer id,
--     [6] lease grace ms beyond the offer's deadline, [7] retention s of a finished order,
--     then one (driver id, pickup distance m) pair per candidate, best first
-- Returns {index of the offered candidate, at us, token, deadline ms, name, rating, vehicle},
-- {0, 'NONE'} when none is eligible, {0, 'LATE'} when the order's search deadline has passed
-- (nothing is booked then), or {-1, status} when the order is no longer searching (the entry is
-- then acknowledged).
local function settle()
  if ARGV[2] ~= '' then redis.call('XACK', KEYS[4], ARGV[3], ARGV[2]) end
  redis.call('ZREM', KEYS[5], ARGV[1])
end
local r = redis.call('HMGET', KEYS[1], 'status', 'deadline', 'window_ms')
if r[1] ~= 'SEARCHING' then
  settle()
  return {-1, r[1] or 'GONE'}
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
if now_us >= tonumber(r[2]) then return {0, 'LATE'} end
local now_ms = math.floor(now_us / 1000)
local fresh_after = now_ms - tonumber(ARGV[4])
for i = 12, #KEYS, 2 do
  local base = 8 + (i - 12)
  local id, dist = ARGV[base], ARGV[base + 1]
  if redis.call('ZSCORE', KEYS[2], id) and redis.call('SISMEMBER', KEYS[10], id) == 0 then
    local seen = tonumber(redis.call('ZSCORE', KEYS[3], id) or '0')
    local d = redis.call('HMGET', KEYS[i], 'status', 'order', 'name', 'rating', 'vehicle')
    if seen < fresh_after or d[1] ~= 'online' then
      redis.call('ZREM', KEYS[2], id)
    elseif (d[2] or '') == '' then
      local window = tonumber(r[3])
      local deadline = now_ms + window
      local token = redis.call('INCR', KEYS[9])
      local leased = redis.call('SET', KEYS[i + 1], token .. '|' .. ARGV[1] .. '|' .. ARGV[5],
        'NX', 'PX', window + tonumber(ARGV[6]))
      if leased then
        local at = string.format('%.0f', now_us)
        redis.call('HSET', KEYS[11], 'id', ARGV[5], 'order', ARGV[1], 'driver', id,
          'token', token, 'deadline', deadline, 'status', 'PENDING', 'created', at,
          'pickup_m', dist)
        redis.call('EXPIRE', KEYS[11], tonumber(ARGV[7]))
        redis.call('ZADD', KEYS[8], deadline, ARGV[5])
        redis.call('HSET', KEYS[i], 'order', ARGV[1], 'offer', ARGV[5])
        redis.call('ZREM', KEYS[2], id)
        redis.call('HINCRBY', KEYS[1], 'offers', 1)
        redis.call('HSET', KEYS[1], 'status', 'OFFERED', 'driver', id, 'offer', ARGV[5],
          'pickup_m', dist, 't_OFFERED', at)
        redis.call('XADD', KEYS[6], 'MAXLEN', '~', 128, '*', 'status', 'OFFERED', 'at', at,
          'driver', id, 'offer', ARGV[5], 'pickup_m', dist)
        redis.call('XADD', KEYS[7], 'MAXLEN', '~', 100000, '*', 'order', ARGV[1],
          'status', 'OFFERED', 'at', at, 'driver', id, 'offer', ARGV[5], 'pickup_m', dist)
        settle()
        return {(i - 10) / 2, at, token, deadline, d[3] or '', d[4] or '', d[5] or ''}
      end
    end
  end
end
return {0, 'NONE'}
