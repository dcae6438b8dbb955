-- Accept an order (a ride or a delivery): store it and queue it for dispatch, in one step.
-- KEYS[1] order hash, [2] city request stream, [3] the order's event stream, [4] city event stream,
--     [5] city retry set, [6] (optional) idempotency key
-- ARGV[1] order events cap, [2] city events cap, [3] order id, [4] search deadline in ms from
--     now, [5] 'queue' (append to the request stream) or 'direct' (the caller dispatches it now;
--     it sits leased in the retry set, so a caller that dies does not lose it), [6] that lease in
--     ms, [7] idempotency ttl s, [8] request fingerprint, [9] an earlier order id the idempotency
--     key may be moved off (it ended without a driver) or '', [10..] field, value pairs
-- Returns {'CREATED', id}; {'EXISTING', id} when the idempotency key already names an order with
-- the same fingerprint (or the order exists: a replayed call); {'CONFLICT', id} when it names one
-- with another fingerprint.
local order_id = ARGV[3]
if KEYS[6] then
  local prior = redis.call('GET', KEYS[6])
  if prior then
    local sep = string.find(prior, '|', 1, true)
    local prior_id, prior_print = string.sub(prior, 1, sep - 1), string.sub(prior, sep + 1)
    if prior_print ~= ARGV[8] then return {'CONFLICT', prior_id} end
    if prior_id ~= ARGV[9] then return {'EXISTING', prior_id} end
  end
end
-- A replayed call (its first reply lost) must not reset an order that has moved on.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'EXISTING', order_id} end
local now = now_us()
local at = us_text(now)
local direct = ARGV[5] == 'direct'
local status = direct and 'SEARCHING' or 'QUEUED'
redis.call('HSET', KEYS[1], 'id', order_id, 'status', status, 'attempts', 0, 'offers', 0,
  'deadline', us_text(now + tonumber(ARGV[4]) * 1000), 't_QUEUED', at, unpack(ARGV, 10))
-- The QUEUED event carries the order's fields: the recorder creates its row from the stream alone.
emit(KEYS[3], KEYS[4], ARGV[1], ARGV[2], order_id, 'status', 'QUEUED', 'at', at, unpack(ARGV, 10))
if direct then
  redis.call('HSET', KEYS[1], 't_SEARCHING', at)
  redis.call('ZADD', KEYS[5], math.floor(now / 1000) + tonumber(ARGV[6]), order_id)
  emit(KEYS[3], KEYS[4], ARGV[1], ARGV[2], order_id, 'status', status, 'at', at)
else
  redis.call('XADD', KEYS[2], '*', 'order', order_id)
end
if KEYS[6] then
  redis.call('SET', KEYS[6], order_id .. '|' .. ARGV[8], 'EX', tonumber(ARGV[7]))
end
return {'CREATED', order_id}
