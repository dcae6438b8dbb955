-- Move an order along its state machine: the driver's steps (arriving, picked up, complete or
-- delivered) and the customer's cancel. A final step frees the driver: a pending offer is
-- withdrawn (lease released, no longer due) and the driver returns to the pool when they can drive.
-- KEYS[1] order hash, [2] city pool, [3] city seen set, [4] retry set, [5] the order's event
--     stream, [6] city event stream, [7] the order's excluded drivers; when the order has a
--     driver: [8] driver hash, [9] driver lease, [10] the pending offer's hash, [11] offers-due set,
--     [12] (optional) today's leaderboard of trips completed in the city
-- ARGV[1] order events cap, [2] city events cap, [3] order id, [4] target status,
--     [5] comma-separated statuses it may leave, [6] the driver the caller read on the order ('' for
--     none), [7] the offer the caller read ('' for none), [8] the driver making the step ('' for
--     the customer), [9] '1' when the step is final, [10] staleness window ms, [11] retention s of
--     a finished order, [12] (with KEYS[12]) how long the leaderboard is kept, s
-- Returns {'OK', at us, the offer withdrawn or ''}, {'ILLEGAL', status}, {'NOT_YOURS', driver},
-- {'CHANGED'} when the order's driver or offer moved under the caller (read again and retry), or
-- {'GONE'}.
local order_id, target, driver, offer = ARGV[3], ARGV[4], ARGV[6], ARGV[7]
local final = ARGV[9] == '1'
local r = redis.call('HMGET', KEYS[1], 'status', 'driver', 'offer')
if not r[1] then return {'GONE'} end
if (r[2] or '') ~= driver or (r[3] or '') ~= offer then return {'CHANGED'} end
if not string.find(',' .. ARGV[5] .. ',', ',' .. r[1] .. ',', 1, true) then
  return {'ILLEGAL', r[1]}
end
if ARGV[8] ~= '' and ARGV[8] ~= driver then return {'NOT_YOURS', driver} end
local now = now_us()
local at = us_text(now)
redis.call('HSET', KEYS[1], 'status', target, 't_' .. target, at)
local withdrawn = (final and r[1] == 'OFFERED') and offer or ''
emit(KEYS[5], KEYS[6], ARGV[1], ARGV[2], order_id, 'status', target, 'at', at,
  'driver', driver, 'offer', withdrawn)
if not final then return {'OK', at, withdrawn} end
local retain = tonumber(ARGV[11])
redis.call('EXPIRE', KEYS[1], retain)
redis.call('EXPIRE', KEYS[5], retain)
redis.call('EXPIRE', KEYS[7], retain)
redis.call('ZREM', KEYS[4], order_id)
if driver == '' then return {'OK', at, withdrawn} end
if withdrawn ~= '' then
  if redis.call('EXISTS', KEYS[10]) == 1 then
    redis.call('HSET', KEYS[10], 'status', 'WITHDRAWN', 'answered', at)
  end
  drop_offer(KEYS[11], KEYS[9], offer)
end
free_driver(KEYS[2], KEYS[3], KEYS[8], driver, order_id, math.floor(now / 1000), ARGV[10])
-- A trip done (not cancelled) counts on the driver's line of today's leaderboard, in this step.
if KEYS[12] and (target == 'COMPLETED' or target == 'DELIVERED') then
  redis.call('ZINCRBY', KEYS[12], 1, driver)
  redis.call('EXPIRE', KEYS[12], tonumber(ARGV[12]))
end
return {'OK', at, withdrawn}
