-- Accept a food order in one step: reserve every limited item (all or none), then store the
-- delivery and queue it for dispatch exactly as order_enqueue.lua does (same key layout for
-- KEYS[1..6]), so stock is never taken for an order that was not queued, nor the reverse.
-- KEYS[1] order hash, [2] city request stream, [3] the order's event stream, [4] city event stream,
--     [5] city retry set, [6] idempotency key (read only when ARGV[6] is not ''),
--     [7] the order's reservation hash, [8] the restaurant's order index (sorted set),
--     [9..] per limited item: stock count, buyers hash
-- ARGV[1] order events cap, [2] city events cap, [3] order id, [4] search deadline in ms from now,
--     [5] idempotency ttl s, [6] request fingerprint or '', [7] customer id, [8] reservation ttl s,
--     [9] n, the number of limited items, then per item 4 values: item id, qty, per-customer
--     limit (0: none), configured stock (seeds a live count Redis lost), then field, value pairs
--     of the order hash
-- Returns {'CREATED', id}; {'EXISTING', id} (idempotent replay); {'CONFLICT', id} (the key was
-- used for another request); {'SOLD_OUT', item, left}; {'LIMIT', item, already reserved}.
local order_id = ARGV[3]
if ARGV[6] ~= '' then
  local prior = redis.call('GET', KEYS[6])
  if prior then
    local sep = string.find(prior, '|', 1, true)
    local prior_id, prior_print = string.sub(prior, 1, sep - 1), string.sub(prior, sep + 1)
    if prior_print ~= ARGV[6] then return {'CONFLICT', prior_id} end
    return {'EXISTING', prior_id}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'EXISTING', order_id} end
local customer = ARGV[7]
local n = tonumber(ARGV[9])
local counts = {}
for i = 1, n do
  local a = 9 + (i - 1) * 4
  local item, qty, limit = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local stock_key, buyers_key = KEYS[7 + i * 2], KEYS[8 + i * 2]
  local left = redis.call('GET', stock_key)
  if not left then
    left = ARGV[a + 4]
    redis.call('SET', stock_key, left)
  end
  local had = tonumber(redis.call('HGET', buyers_key, customer) or '0')
  if limit > 0 and had + qty > limit then return {'LIMIT', item, had} end
  left = tonumber(left)
  if left < qty then return {'SOLD_OUT', item, left} end
  counts[i] = qty
end
local fields_at = 10 + n * 4
if n > 0 then
  redis.call('HSET', KEYS[7], 'customer', customer, 'state', 'held')
  for i = 1, n do
    local a = 9 + (i - 1) * 4
    redis.call('DECRBY', KEYS[7 + i * 2], counts[i])
    redis.call('HINCRBY', KEYS[8 + i * 2], customer, counts[i])
    redis.call('HSET', KEYS[7], 'item:' .. ARGV[a + 1], counts[i])
  end
  redis.call('EXPIRE', KEYS[7], tonumber(ARGV[8]))
end
local now = now_us()
local at = us_text(now)
redis.call('HSET', KEYS[1], 'id', order_id, 'status', 'QUEUED', 'attempts', 0, 'offers', 0,
  'deadline', us_text(now + tonumber(ARGV[4]) * 1000), 't_QUEUED', at,
  unpack(ARGV, fields_at))
emit(KEYS[3], KEYS[4], ARGV[1], ARGV[2], order_id, 'status', 'QUEUED', 'at', at,
  unpack(ARGV, fields_at))
redis.call('XADD', KEYS[2], '*', 'order', order_id)
redis.call('ZADD', KEYS[8], math.floor(now / 1000), order_id)
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[6], order_id .. '|' .. ARGV[6], 'EX', tonumber(ARGV[5]))
end
return {'CREATED', order_id}
