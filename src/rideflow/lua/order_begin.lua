-- A dispatcher takes an order up: QUEUED becomes SEARCHING, and the first, smallest search runs
-- in the same step. An order past searching is acknowledged and dropped, so that redelivered or
-- retried entries are handled idempotently.
-- KEYS[1] order hash, [2] city request stream, [3] city retry set, [4] city pool (GEO),
--     [5] the order's event stream, [6] city event stream, [7] the order's excluded drivers
-- ARGV[1] order id, [2] stream entry id ('' when the order came from the retry set), [3] group,
--     [4] first search radius m, [5] most candidates, [6] retention s of a finished order
-- Returns {'SEARCHING', pickup 'lat,lng', strategy, max radius m or '', candidates to ask for,
-- driver id, distance m, driver id, distance m, ...} nearest first, or {status} (or {'GONE'})
-- when there is nothing to do.
local r = redis.call('HMGET', KEYS[1], 'status', 'pickup', 'deadline', 'strategy', 'radius_m')
local status = r[1]
if status == 'QUEUED' then
  local t = redis.call('TIME')
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local at = string.format('%.0f', now_us)
  local reason = nil
  if now_us >= tonumber(r[3]) then
    -- Nobody took it up before its deadline (no dispatcher running): the customer waited enough.
    status = 'NO_DRIVER_FOUND'
    reason = 'the order waited in the queue past its deadline'
    redis.call('HSET', KEYS[1], 'status', status, 't_' .. status, at, 'reason', reason)
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
    redis.call('EXPIRE', KEYS[5], tonumber(ARGV[6]))
  else
    status = 'SEARCHING'
    redis.call('HSET', KEYS[1], 'status', status, 't_' .. status, at)
  end
  local fields = {'status', status, 'at', at}
  if reason then fields[#fields + 1] = 'reason'; fields[#fields + 1] = reason end
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 128, '*', unpack(fields))
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', 100000, '*', 'order', ARGV[1], unpack(fields))
end
if status ~= 'SEARCHING' then
  if ARGV[2] ~= '' then redis.call('XACK', KEYS[2], ARGV[3], ARGV[2]) end
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {status or 'GONE'}
end
local radius = tonumber(ARGV[4])
if r[5] and r[5] ~= '' and tonumber(r[5]) < radius then radius = tonumber(r[5]) end
-- Drivers who turned this order down stay in the pool: ask for enough to look past them.
local count = tonumber(ARGV[5]) + redis.call('SCARD', KEYS[7])
local lat, lng = string.match(r[2], '([^,]+),([^,]+)')
local found = redis.call('GEOSEARCH', KEYS[4], 'FROMLONLAT', lng, lat, 'BYRADIUS', radius, 'm',
  'ASC', 'COUNT', count, 'WITHDIST')
local out = {'SEARCHING', r[2], r[4] or 'nearest', r[5] or '', count}
for _, hit in ipairs(found) do
  out[#out + 1] = hit[1]
  out[#out + 1] = hit[2]
end
return out
