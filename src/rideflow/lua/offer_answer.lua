-- Settle a pending offer: the driver accepts or rejects it, or it lapses at its deadline.
-- Accept: the order is ACCEPTED and stays with the driver. Reject or lapse: the lease is released
-- at once, the (order, driver) pair is excluded, the driver returns to the pool (a driver who let
-- `max lapses` offers in a row lapse goes offline instead), and the order goes back to SEARCHING
-- and onto the request stream, so the next driver is offered at once.
-- KEYS[1] offer hash, [2] order hash, [3] driver hash, [4] driver lease, [5] city offers-due set,
--     [6] city pool, [7] city seen set, [8] the order's excluded drivers, [9] request stream,
--     [10] the order's event stream, [11] city event stream
-- ARGV[1] 'accept', 'reject' or 'expire', [2] offer id, [3] the answering driver ('' to expire),
--     [4] their fencing token ('' to expire), [5] staleness window ms, [6] most lapses in a row,
--     [7] retention s of a finished order, [8] (optional) the reason to record for a reject
-- Returns {outcome, at us, detail}: outcome ACCEPTED, REJECTED or EXPIRED (detail 'offline'
-- when the driver was taken offline, 'replay' when the same answer was already recorded); or a
-- refusal: {'GONE'}, {'NOT_YOURS', driver},
-- {'STALE_TOKEN', token}, {'ANSWERED', status}, {'NOT_DUE', deadline ms}.
local action = ARGV[1]
local o = redis.call('HMGET', KEYS[1], 'order', 'driver', 'token', 'deadline', 'status')
if not o[1] then return {'GONE'} end
if action ~= 'expire' then
  if o[2] ~= ARGV[3] then return {'NOT_YOURS', o[2]} end
  if o[3] ~= ARGV[4] then return {'STALE_TOKEN', o[3]} end
end
if o[5] ~= 'PENDING' then
  -- The same answer again (its first reply lost) gets the first outcome; a due offer already
  -- settled leaves the deadline set, so no sweeper claims it again.
  local replayed = (action == 'accept' and o[5] == 'ACCEPTED')
    or (action == 'reject' and o[5] == 'REJECTED')
  if replayed then
    return {o[5], redis.call('HGET', KEYS[1], 'answered') or '0', 'replay'}
  end
  if action == 'expire' then redis.call('ZREM', KEYS[5], ARGV[2]) end
  return {'ANSWERED', o[5]}
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local deadline = tonumber(o[4])
if action == 'expire' and now_ms < deadline then return {'NOT_DUE', o[4]} end
if action ~= 'expire' and now_ms > deadline then action = 'expire' end -- too late to answer
local at = string.format('%.0f', now_us)
local order_id, driver = o[1], o[2]
local current = redis.call('HMGET', KEYS[2], 'status', 'offer')
local live = current[1] == 'OFFERED' and current[2] == ARGV[2]
if action == 'accept' and not live then return {'ANSWERED', current[1] or 'GONE'} end
local lease = redis.call('GET', KEYS[4])
if lease and string.sub(lease, 1, #o[3] + 1) == o[3] .. '|' then redis.call('DEL', KEYS[4]) end
redis.call('ZREM', KEYS[5], ARGV[2])
local function emit(status, ...)
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', 128, '*', 'status', status, 'at', at, ...)
  redis.call('XADD', KEYS[11], 'MAXLEN', '~', 100000, '*', 'order', order_id, 'status', status,
    'at', at, ...)
end
if action == 'accept' then
  redis.call('HSET', KEYS[1], 'status', 'ACCEPTED', 'answered', at)
  redis.call('HSET', KEYS[3], 'offer', '', 'lapses', 0)
  redis.call('HSET', KEYS[2], 'status', 'ACCEPTED', 't_ACCEPTED', at)
  emit('ACCEPTED', 'driver', driver, 'offer', ARGV[2])
  return {'ACCEPTED', at, ''}
end
local outcome = action == 'reject' and 'REJECTED' or 'EXPIRED'
redis.call('HSET', KEYS[1], 'status', outcome, 'answered', at)
redis.call('SADD', KEYS[8], driver)
redis.call('EXPIRE', KEYS[8], tonumber(ARGV[7]))
local detail = ''
local d = redis.call('HMGET', KEYS[3], 'status', 'order', 'lat', 'lng')
if d[2] == order_id then
  redis.call('HSET', KEYS[3], 'order', '', 'offer', '')
  local lapses = 0
  if outcome == 'EXPIRED' then lapses = redis.call('HINCRBY', KEYS[3], 'lapses', 1) end
  if outcome == 'REJECTED' then redis.call('HSET', KEYS[3], 'lapses', 0) end
  if lapses >= tonumber(ARGV[6]) then
    redis.call('HSET', KEYS[3], 'status', 'offline', 'lapses', 0)
    redis.call('ZREM', KEYS[6], driver)
    detail = 'offline'
  else
    local seen = tonumber(redis.call('ZSCORE', KEYS[7], driver) or '0')
    if d[1] == 'online' and d[3] and seen >= now_ms - tonumber(ARGV[5]) then
      redis.call('GEOADD', KEYS[6], d[4], d[3], driver)
    end
  end
end
if live then
  local reason = outcome == 'REJECTED' and ('driver ' .. driver .. ' rejected the offer')
    or ('the offer to driver ' .. driver .. ' lapsed unanswered')
  if outcome == 'REJECTED' and ARGV[8] and ARGV[8] ~= '' then reason = ARGV[8] end
  redis.call('HSET', KEYS[2], 'status', 'SEARCHING', 'driver', '', 'offer', '',
    't_SEARCHING', at)
  redis.call('HDEL', KEYS[2], 'pickup_m')
  emit('SEARCHING', 'driver', driver, 'offer', ARGV[2], 'outcome', outcome, 'reason', reason)
  redis.call('XADD', KEYS[9], '*', 'order', order_id)
end
return {outcome, at, detail}
