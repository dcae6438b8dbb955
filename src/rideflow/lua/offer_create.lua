-- Reserve the first eligible candidate for a searching order and offer it the order, in one step.
-- Eligible: in the city's pool, seen within the staleness window, online, holding no order, not
-- excluded from this order, and its lease free (SET NX PX). The offer carries a fencing token
-- from the city's counter and a deadline; it is due in the city's deadline set. The offer's hash
-- is kept for the retention after its lease ends, so it outlives its own deadline whatever the
-- order's window.
-- KEYS[1] order hash, [2] city pool (GEO), [3] city seen set, [4] request stream, [5] retry set,
--     [6] the order's event stream, [7] city event stream, [8] city offers-due set,
--     [9] city fencing counter, [10] the order's excluded drivers, [11] the new offer's hash,
--     [12..] per candidate, in ARGV order: driver hash, driver lease
-- ARGV[1] order events cap, [2] city events cap, [3] order id, [4] stream entry id or '',
--     [5] group, [6] staleness window ms, [7] offer id, [8] lease grace ms beyond the offer's
--     deadline, [9] retention s of a finished order, then one (driver id, pickup distance m) pair
--     per candidate, best first
-- Returns {'OFFERED', index of the offered candidate (1-based), at us, token, deadline ms, name,
-- rating, vehicle, searching since us (the order's latest SEARCHING; '' if unstamped)}; {'NONE'} when none is eligible; {'LATE'} when the order's search deadline
-- has passed (nothing is booked then); {'NOT_SEARCHING', status or 'GONE'} when the order is no
-- longer searching (its entry is acknowledged and its retry dropped then).
local order_id, offer_id = ARGV[3], ARGV[7]
local function settle()
  if ARGV[4] ~= '' then redis.call('XACK', KEYS[4], ARGV[5], ARGV[4]) end
  redis.call('ZREM', KEYS[5], order_id)
end
local r = redis.call('HMGET', KEYS[1], 'status', 'deadline', 'window_ms', 't_SEARCHING')
if r[1] ~= 'SEARCHING' then
  settle()
  return {'NOT_SEARCHING', r[1] or 'GONE'}
end
local now = now_us()
if now >= tonumber(r[2]) then return {'LATE'} end
local now_ms = math.floor(now / 1000)
local fresh_after = now_ms - tonumber(ARGV[6])
for i = 12, #KEYS, 2 do
  local base = 10 + (i - 12)
  local id, dist = ARGV[base], ARGV[base + 1]
  if redis.call('ZSCORE', KEYS[2], id) and redis.call('SISMEMBER', KEYS[10], id) == 0 then
    local seen = tonumber(redis.call('ZSCORE', KEYS[3], id) or '0')
    local d = redis.call('HMGET', KEYS[i], 'status', 'order', 'name', 'rating', 'vehicle')
    if seen < fresh_after or d[1] ~= 'online' then
      redis.call('ZREM', KEYS[2], id)
    elseif (d[2] or '') == '' then
      local window = tonumber(r[3])
      local lease_ms = window + tonumber(ARGV[8])
      local deadline = now_ms + window
      local token = redis.call('INCR', KEYS[9])
      local leased = redis.call('SET', KEYS[i + 1], token .. '|' .. order_id .. '|' .. offer_id,
        'NX', 'PX', lease_ms)
      if leased then
        local at = us_text(now)
        redis.call('HSET', KEYS[11], 'id', offer_id, 'order', order_id, 'driver', id,
          'token', token, 'deadline', deadline, 'status', 'PENDING', 'created', at,
          'pickup_m', dist)
        redis.call('EXPIRE', KEYS[11], tonumber(ARGV[9]) + math.ceil(lease_ms / 1000))
        redis.call('ZADD', KEYS[8], deadline, offer_id)
        redis.call('HSET', KEYS[i], 'order', order_id, 'offer', offer_id)
        redis.call('ZREM', KEYS[2], id)
        redis.call('HINCRBY', KEYS[1], 'offers', 1)
        redis.call('HSET', KEYS[1], 'status', 'OFFERED', 'driver', id, 'offer', offer_id,
          'pickup_m', dist, 't_OFFERED', at)
        emit(KEYS[6], KEYS[7], ARGV[1], ARGV[2], order_id, 'status', 'OFFERED', 'at', at,
          'driver', id, 'offer', offer_id, 'pickup_m', dist)
        settle()
        return {'OFFERED', (i - 10) / 2, at, token, deadline, d[3] or '', d[4] or '', d[5] or '',
          r[4] or ''}
      end
    end
  end
end
return {'NONE'}
