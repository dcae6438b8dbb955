-- A dispatcher takes an order up: QUEUED becomes SEARCHING, and the first, smallest search runs
-- in the same step. An order past searching is acknowledged and dropped, so that redelivered or
-- retried entries are handled idempotently.
-- KEYS[1] order hash, [2] city request stream, [3] city retry set, [4] city pool (GEO),
--     [5] the order's event stream, [6] city event stream, [7] the order's excluded drivers
-- ARGV[1] order events cap, [2] city events cap, [3] order id, [4] stream entry id ('' when the
--     order came from the retry set), [5] group, [6] first search radius m, [7] most candidates,
--     [8] retention s of a finished order
-- Returns {'SEARCHING', pickup 'lat,lng', strategy, max radius m or '', candidates to ask for,
-- us it waited queued (when this call took it out of QUEUED; '' otherwise), driver id, distance m,
-- driver id, distance m, ...} nearest first, or {status} (or {'GONE'}) when there is nothing to
-- do (NO_DRIVER_FOUND when it waited queued past its deadline).
local order_id = ARGV[3]
local r = redis.call('HMGET', KEYS[1], 'status', 'pickup', 'deadline', 'strategy', 'radius_m',
  't_QUEUED')
local status = r[1]
local waited = ''
if status == 'QUEUED' then
  local now = now_us()
  local at = us_text(now)
  if now >= tonumber(r[3]) then
    -- Nobody took it up before its deadline (no dispatcher running): the customer waited enough.
    status = 'NO_DRIVER_FOUND'
    local reason = 'the order waited in the queue past its deadline'
    redis.call('HSET', KEYS[1], 'status', status, 't_' .. status, at, 'reason', reason)
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[8]))
    redis.call('EXPIRE', KEYS[5], tonumber(ARGV[8]))
    emit(KEYS[5], KEYS[6], ARGV[1], ARGV[2], order_id, 'status', status, 'at', at,
      'reason', reason)
  else
    status = 'SEARCHING'
    if r[6] then waited = us_text(now - tonumber(r[6])) end
    redis.call('HSET', KEYS[1], 'status', status, 't_' .. status, at)
    emit(KEYS[5], KEYS[6], ARGV[1], ARGV[2], order_id, 'status', status, 'at', at)
  end
end
if status ~= 'SEARCHING' then
  if ARGV[4] ~= '' then redis.call('XACK', KEYS[2], ARGV[5], ARGV[4]) end
  redis.call('ZREM', KEYS[3], order_id)
  return {status or 'GONE'}
end
local radius = tonumber(ARGV[6])
if r[5] and r[5] ~= '' and tonumber(r[5]) < radius then radius = tonumber(r[5]) end
-- Drivers who turned this order down stay in the pool: ask for enough to look past them.
local count = tonumber(ARGV[7]) + redis.call('SCARD', KEYS[7])
local lat, lng = string.match(r[2], '([^,]+),([^,]+)')
local found = redis.call('GEOSEARCH', KEYS[4], 'FROMLONLAT', lng, lat, 'BYRADIUS', radius, 'm',
  'ASC', 'COUNT', count, 'WITHDIST')
local out = {'SEARCHING', r[2], r[4] or 'nearest', r[5] or '', count, waited}
for _, hit in ipairs(found) do
  out[#out + 1] = hit[1]
  out[#out + 1] = hit[2]
end
return out
