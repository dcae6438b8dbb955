-- A dispatcher takes a ride up: QUEUED becomes SEARCHING, and the first, smallest search runs in
-- the same step. A ride past searching is acknowledged and dropped, so that redelivered or
-- retried entries are handled idempotently.
-- KEYS[1] ride hash, [2] city request stream, [3] city retry set, [4] city pool (GEO)
-- ARGV[1] ride id, [2] stream entry id ('' when the ride came from the retry set), [3] group,
--     [4] first search radius m, [5] most candidates
-- Returns {'SEARCHING', pickup 'lat,lng', driver id, distance m, driver id, distance m, ...}
-- nearest first, or {status} (or {'GONE'}) when there is nothing to do.
local r = redis.call('HMGET', KEYS[1], 'status', 'pickup')
local status = r[1]
if status == 'QUEUED' then
  local t = redis.call('TIME')
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('HSET', KEYS[1], 'status', 'SEARCHING', 't_SEARCHING', string.format('%.0f', now_us))
  status = 'SEARCHING'
end
if status ~= 'SEARCHING' then
  if ARGV[2] ~= '' then redis.call('XACK', KEYS[2], ARGV[3], ARGV[2]) end
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {status or 'GONE'}
end
local lat, lng = string.match(r[2], '([^,]+),([^,]+)')
local found = redis.call('GEOSEARCH', KEYS[4], 'FROMLONLAT', lng, lat, 'BYRADIUS', ARGV[4], 'm',
  'ASC', 'COUNT', tonumber(ARGV[5]), 'WITHDIST')
local out = {'SEARCHING', r[2]}
for _, hit in ipairs(found) do
  out[#out + 1] = hit[1]
  out[#out + 1] = hit[2]
end
return out
