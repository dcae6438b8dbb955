-- Reserve the first eligible candidate for a searching ride and assign it, in one step.
-- Eligible: in the city's pool, seen within the staleness window, online, holding no ride.
-- KEYS[1] ride hash, [2] city pool (GEO), [3] city seen set, [4] request stream, [5] retry set,
--     [6] the ride's event stream, [7..] candidate driver hashes, in ARGV order
-- ARGV[1] ride id, [2] stream entry id or '', [3] group, [4] staleness window ms,
--     then one (driver id, pickup distance m) pair per candidate, best first
-- Returns {index of the assigned candidate, assigned us}, {0, 'NONE'} when none is eligible,
-- {0, 'LATE'} when the ride's deadline has passed (nothing is booked then),
-- or {-1, status} when the ride is no longer searching (the entry is then acknowledged).
local function settle()
  if ARGV[2] ~= '' then redis.call('XACK', KEYS[4], ARGV[3], ARGV[2]) end
  redis.call('ZREM', KEYS[5], ARGV[1])
end
local r = redis.call('HMGET', KEYS[1], 'status', 'deadline')
if r[1] ~= 'SEARCHING' then
  settle()
  return {-1, r[1] or 'GONE'}
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
if now_us >= tonumber(r[2]) then return {0, 'LATE'} end
local fresh_after = math.floor(now_us / 1000) - tonumber(ARGV[4])
for i = 7, #KEYS do
  local base = 5 + (i - 7) * 2
  local id, dist = ARGV[base], ARGV[base + 1]
  if redis.call('ZSCORE', KEYS[2], id) then
    local seen = tonumber(redis.call('ZSCORE', KEYS[3], id) or '0')
    local d = redis.call('HMGET', KEYS[i], 'status', 'ride')
    if seen < fresh_after or d[1] ~= 'online' then
      redis.call('ZREM', KEYS[2], id)
    elseif (d[2] or '') == '' then
      local at = string.format('%.0f', now_us)
      redis.call('HSET', KEYS[i], 'ride', ARGV[1])
      redis.call('ZREM', KEYS[2], id)
      redis.call('HSET', KEYS[1], 'status', 'ASSIGNED', 'driver', id, 'pickup_m', dist,
        't_ASSIGNED', at)
      redis.call('XADD', KEYS[6], 'MAXLEN', '~', 64, '*', 'status', 'ASSIGNED', 'at', at, 'driver', id,
        'pickup_m', dist)
      settle()
      return {i - 6, at}
    end
  end
end
return {0, 'NONE'}
