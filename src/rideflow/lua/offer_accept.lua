-- The driver accepts a pending offer with its fencing token before its deadline: the order is
-- ACCEPTED and stays with the driver, the lease is released and the offer is no longer due.
-- KEYS[1] offer hash, [2] order hash, [3] driver hash, [4] driver lease, [5] city offers-due set,
--     [6] the order's event stream, [7] city event stream
-- ARGV[1] order events cap, [2] city events cap, [3] offer id, [4] the answering driver,
--     [5] their fencing token
-- Returns {'ACCEPTED', at us, '', the offer's creation us}, or {'ACCEPTED', first at us, 'replay'} when it was accepted
-- already (a first reply lost); or a refusal, changing nothing: {'GONE'}, {'NOT_YOURS', driver},
-- {'STALE_TOKEN', token}, {'ANSWERED', status} (the offer, or its order, has moved on), or
-- {'LATE', deadline ms} (past the deadline: the caller lets the offer lapse).
local offer_id, driver = ARGV[3], ARGV[4]
local o = redis.call('HMGET', KEYS[1], 'order', 'driver', 'token', 'deadline', 'status',
  'answered', 'created')
if not o[1] then return {'GONE'} end
if o[2] ~= driver then return {'NOT_YOURS', o[2]} end
if o[3] ~= ARGV[5] then return {'STALE_TOKEN', o[3]} end
if o[5] == 'ACCEPTED' then return {'ACCEPTED', o[6] or '0', 'replay'} end
if o[5] ~= 'PENDING' then return {'ANSWERED', o[5]} end
local now = now_us()
if math.floor(now / 1000) > tonumber(o[4]) then return {'LATE', o[4]} end
local order_id = o[1]
local current = redis.call('HMGET', KEYS[2], 'status', 'offer')
if current[1] ~= 'OFFERED' or current[2] ~= offer_id then
  return {'ANSWERED', current[1] or 'GONE'}
end
local at = us_text(now)
drop_offer(KEYS[5], KEYS[4], offer_id)
redis.call('HSET', KEYS[1], 'status', 'ACCEPTED', 'answered', at)
redis.call('HSET', KEYS[3], 'offer', '', 'lapses', 0)
redis.call('HSET', KEYS[2], 'status', 'ACCEPTED', 't_ACCEPTED', at)
emit(KEYS[6], KEYS[7], ARGV[1], ARGV[2], order_id, 'status', 'ACCEPTED', 'at', at,
  'driver', driver, 'offer', offer_id)
return {'ACCEPTED', at, '', o[7] or ''}
