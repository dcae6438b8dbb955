-- Accept an order (a ride or a delivery): store it and queue it for dispatch, in one step.
-- KEYS[1] order hash, [2] city request stream, [3] the order's event stream, [4] city event stream,
--     [5] city retry set, [6] (optional) idempotency key
-- ARGV[1] order id, [2] search deadline in ms from now, [3] 'queue' (append to the request
--      stream) or 'direct' (the caller dispatches it now; it sits leased in the retry set, so a
--      caller that dies does not lose it), [4] that lease in ms, [5] idempotency ttl s,
--      [6] request fingerprint, [7] an earlier order id the idempotency key may be moved off
--      (it ended without a driver) or '', [8..] field, value pairs of the order
-- Returns {1, id} when stored, {0, id} when the idempotency key already names an order with the
-- same fingerprint, {-1, id} when it names one with another.
if KEYS[6] then
  local prior = redis.call('GET', KEYS[6])
  if prior then
    local sep = string.find(prior, '|', 1, true)
    local prior_id, prior_print = string.sub(prior, 1, sep - 1), string.sub(prior, sep + 1)
    if prior_print ~= ARGV[6] then return {-1, prior_id} end
    if prior_id ~= ARGV[7] then return {0, prior_id} end
  end
end
-- A replayed call (its first reply lost) must not reset an order that has moved on.
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ARGV[1]} end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local at = string.format('%.0f', now_us)
local status = 'QUEUED'
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'attempts', 0, 'offers', 0,
  'deadline', string.format('%.0f', now_us + tonumber(ARGV[2]) * 1000), 't_QUEUED', at)
for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[3] == 'direct' then
  status = 'SEARCHING'
  redis.call('HSET', KEYS[1], 't_SEARCHING', at)
  redis.call('ZADD', KEYS[5], math.floor(now_us / 1000) + tonumber(ARGV[4]), ARGV[1])
else
  redis.call('XADD', KEYS[2], '*', 'order', ARGV[1])
end
redis.call('HSET', KEYS[1], 'status', status)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 128, '*', 'status', 'QUEUED', 'at', at)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'order', ARGV[1], 'status', 'QUEUED', 'at', at)
if status == 'SEARCHING' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 128, '*', 'status', status, 'at', at)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'order', ARGV[1], 'status', status, 'at', at)
end
if KEYS[6] then
  redis.call('SET', KEYS[6], ARGV[1] .. '|' .. ARGV[6], 'EX', tonumber(ARGV[5]))
end
return {1, ARGV[1]}
