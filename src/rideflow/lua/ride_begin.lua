-- A dispatcher takes a ride up: QUEUED becomes SEARCHING, and the first, smallest search runs in
-- the same step. A ride past searching is acknowledged and dropped, so that redelivered or
-- retried entries are handled idempotently.
-- KEYS[1] ride hash, [2] city request stream, [3] city retry set, [4] city pool (GEO),
--     [5] the ride's event stream
-- ARGV[1] ride id, [2] stream entry id ('' when the ride came from the retry set), [3] group,
--     [4] first search radius m, [5] most candidates, [6] retention s of a finished ride
-- Returns {'SEARCHING', pickup 'lat,lng', strategy, driver id, distance m, driver id, distance m,
-- ...}
-- nearest first, or {status} (or {'GONE'}) when there is nothing to do.
local r = redis.call('HMGET', KEYS[1], 'status', 'pickup', 'deadline', 'strategy')
local status = r[1]
if status == 'QUEUED' then
  local t = redis.call('TIME')
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local at = string.format('%.0f', now_us)
  if now_us >= tonumber(r[3]) then
    -- Nobody took it up before its deadline (no dispatcher running): the rider has waited enough.
    status = 'NO_DRIVER_FOUND'
    redis.call('HSET', KEYS[1], 'status', status, 't_NO_DRIVER_FOUND', at,
      'reason', 'the ride waited in the queue past its deadline')
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', 64, '*', 'status', status, 'at', at,
      'reason', 'the ride waited in the queue past its deadline')
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
    redis.call('EXPIRE', KEYS[5], tonumber(ARGV[6]))
  else
    redis.call('HSET', KEYS[1], 'status', 'SEARCHING', 't_SEARCHING', at)
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', 64, '*', 'status', 'SEARCHING', 'at', at)
    status = 'SEARCHING'
  end
end
if status ~= 'SEARCHING' then
  if ARGV[2] ~= '' then redis.call('XACK', KEYS[2], ARGV[3], ARGV[2]) end
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {status or 'GONE'}
end
local lat, lng = string.match(r[2], '([^,]+),([^,]+)')
local found = redis.call('GEOSEARCH', KEYS[4], 'FROMLONLAT', lng, lat, 'BYRADIUS', ARGV[4], 'm',
  'ASC', 'COUNT', tonumber(ARGV[5]), 'WITHDIST')
local out = {'SEARCHING', r[2], r[4] or 'nearest'}
for _, hit in ipairs(found) do
  out[#out + 1] = hit[1]
  out[#out + 1] = hit[2]
end
return out
