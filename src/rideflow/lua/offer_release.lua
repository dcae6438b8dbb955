-- Release a pending offer without a ride: the driver rejects it, or it lapses at its deadline.
-- The lease is released at once, the (order, driver) pair is excluded, the driver returns to the
-- pool (a driver who let `most lapses` offers in a row lapse goes offline instead), and the order
-- goes back to SEARCHING and onto the request stream, so the next driver is offered at once.
-- An offer whose hash is gone (evicted, deleted) while its order still waits on it is repaired
-- at its deadline: the order goes back to SEARCHING and the driver is freed, neither excluded
-- nor counted a lapse, so a lost key never strands them.
-- KEYS[1] offer hash, [2] order hash, [3] driver hash, [4] driver lease, [5] city offers-due set,
--     [6] city pool, [7] city seen set, [8] the order's excluded drivers, [9] request stream,
--     [10] the order's event stream, [11] city event stream
-- ARGV[1] order events cap, [2] city events cap, [3] 'reject' or 'expire', [4] offer id,
--     [5] the driver (the answering one to reject; to expire, the one the offer or, when its
--     hash is gone, the order names), [6] their fencing token ('' to expire), [7] staleness
--     window ms, [8] most lapses in a row, [9] retention s of a finished order, [10] the reason
--     to record for a reject ('' for the usual one)
-- Returns {outcome, at us, detail}: outcome REJECTED or EXPIRED (detail 'offline' when the driver
-- was taken offline, 'replay' when the same reject was already recorded), or REPAIRED (a lost
-- offer); or a refusal: {'GONE'}, {'NOT_YOURS', driver}, {'STALE_TOKEN', token},
-- {'ANSWERED', status}, {'NOT_DUE', deadline ms}.
local action, offer_id, driver = ARGV[3], ARGV[4], ARGV[5]
local now = now_us()
local now_ms = math.floor(now / 1000)
local at = us_text(now)
local function requeue(order_id, outcome, reason)
  redis.call('HSET', KEYS[2], 'status', 'SEARCHING', 'driver', '', 'offer', '',
    't_SEARCHING', at)
  redis.call('HDEL', KEYS[2], 'pickup_m')
  emit(KEYS[10], KEYS[11], ARGV[1], ARGV[2], order_id, 'status', 'SEARCHING', 'at', at,
    'driver', driver, 'offer', offer_id, 'outcome', outcome, 'reason', reason)
  redis.call('XADD', KEYS[9], '*', 'order', order_id)
end
local o = redis.call('HMGET', KEYS[1], 'order', 'driver', 'token', 'deadline', 'status')
if not o[1] then
  if action ~= 'expire' then return {'GONE'} end
  local order = redis.call('HMGET', KEYS[2], 'id', 'status', 'driver', 'offer')
  drop_offer(KEYS[5], KEYS[4], offer_id)
  if order[2] ~= 'OFFERED' or order[4] ~= offer_id or order[3] ~= driver then return {'GONE'} end
  free_driver(KEYS[6], KEYS[7], KEYS[3], driver, order[1], now_ms, ARGV[7])
  requeue(order[1], 'LOST',
    'the offer to driver ' .. driver .. ' was lost before it was answered')
  return {'REPAIRED', at, ''}
end
if o[2] ~= driver then return {'NOT_YOURS', o[2]} end
if action ~= 'expire' and o[3] ~= ARGV[6] then return {'STALE_TOKEN', o[3]} end
if o[5] ~= 'PENDING' then
  if action == 'reject' and o[5] == 'REJECTED' then
    return {o[5], redis.call('HGET', KEYS[1], 'answered') or '0', 'replay'}
  end
  -- A due offer already settled leaves the deadline set, so no sweeper claims it again.
  if action == 'expire' then redis.call('ZREM', KEYS[5], offer_id) end
  return {'ANSWERED', o[5]}
end
if action == 'expire' and now_ms < tonumber(o[4]) then return {'NOT_DUE', o[4]} end
if now_ms > tonumber(o[4]) then action = 'expire' end -- too late to reject
local order_id = o[1]
local outcome = action == 'reject' and 'REJECTED' or 'EXPIRED'
drop_offer(KEYS[5], KEYS[4], offer_id)
redis.call('HSET', KEYS[1], 'status', outcome, 'answered', at)
redis.call('SADD', KEYS[8], driver)
redis.call('EXPIRE', KEYS[8], tonumber(ARGV[9]))
local detail = ''
local d = redis.call('HMGET', KEYS[3], 'status', 'order', 'lat', 'lng')
if d[2] == order_id then
  local lapses = 0
  if outcome == 'EXPIRED' then
    lapses = redis.call('HINCRBY', KEYS[3], 'lapses', 1)
  else
    redis.call('HSET', KEYS[3], 'lapses', 0)
  end
  redis.call('HSET', KEYS[3], 'order', '', 'offer', '')
  if lapses >= tonumber(ARGV[8]) then
    redis.call('HSET', KEYS[3], 'status', 'offline', 'lapses', 0)
    redis.call('ZREM', KEYS[6], driver)
    detail = 'offline'
  else
    local seen = tonumber(redis.call('ZSCORE', KEYS[7], driver) or '0')
    to_pool(KEYS[6], driver, d[1], '', d[4], d[3], seen, now_ms - tonumber(ARGV[7]))
  end
end
local live = redis.call('HMGET', KEYS[2], 'status', 'offer')
if live[1] == 'OFFERED' and live[2] == offer_id then
  local reason = outcome == 'REJECTED' and ('driver ' .. driver .. ' rejected the offer')
    or ('the offer to driver ' .. driver .. ' lapsed unanswered')
  if outcome == 'REJECTED' and ARGV[10] ~= '' then reason = ARGV[10] end
  requeue(order_id, outcome, reason)
end
return {outcome, at, detail}
