-- The prelude: prepended to every script at registration (one chunk, so these locals are in
-- scope there). It holds what scripts would otherwise copy: Redis time, event emission, the
-- return to the pool, and settling an offer's lease and deadline.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Epoch microseconds as the integer text events and hashes carry (no exponent).
local function us_text(us) return string.format('%.0f', us) end
-- XADD, capped (`MAXLEN ~ cap`) unless `cap` is 0: then kept until a consumer group's runner
-- trims what every group has acknowledged.
local function xadd_capped(stream, cap, ...)
  if tonumber(cap) > 0 then
    return redis.call('XADD', stream, 'MAXLEN', '~', cap, '*', ...)
  end
  return redis.call('XADD', stream, '*', ...)
end
-- One compact entry on the finished-jobs stream for a job that completed or failed (one XADD).
local function finished_entry(stream, cap, job_hash, id, status, finished_ms)
  local j = redis.call('HMGET', job_hash, 'task', 'priority', 'attempts', 'retries', 'created',
    'started', 'error', 'result')
  xadd_capped(stream, cap, 'id', id, 'task', j[1] or '', 'status', status, 'priority', j[2] or '',
    'attempts', j[3] or '0', 'retries', j[4] or '0', 'created', j[5] or '', 'started', j[6] or '',
    'finished', finished_ms, 'error', status == 'failed' and (j[7] or '') or '',
    'result', status == 'completed' and (j[8] or '') or '')
end
-- Append one transition to the city's stream and the order's (caps come from the caller's ARGV,
-- so Python owns them; the city's is 0 while the recorder keeps it). The order's entry takes the
-- city entry's id, so an event has one id everywhere: a WebSocket client that saw it live (from
-- the city stream) resumes from the order's stream after that very id. City ids only grow, so
-- the explicit id is always past the order's last; should it not be (the city stream deleted and
-- the clock stepped back), the order's entry gets an id of its own rather than failing the step.
local function emit(order_stream, city_stream, order_cap, city_cap, order_id, ...)
  local id = xadd_capped(city_stream, city_cap, 'order', order_id, ...)
  local ok = redis.pcall('XADD', order_stream, 'MAXLEN', '~', order_cap, id, ...)
  if type(ok) == 'table' and ok.err then
    redis.call('XADD', order_stream, 'MAXLEN', '~', order_cap, '*', ...)
  end
end
-- The one rule of the pool: a driver is in it when online, holding no order and seen within the
-- staleness window (seen at or after `fresh_after` ms), and out of it otherwise.
local function to_pool(pool, driver_id, status, order, lng, lat, seen_ms, fresh_after)
  if status == 'online' and (order or '') == '' and lat and seen_ms >= fresh_after then
    redis.call('GEOADD', pool, lng, lat, driver_id)
    return true
  end
  redis.call('ZREM', pool, driver_id)
  return false
end
-- A driver who holds `order_id` holds it no more, and goes back to the pool if they may.
-- Returns the driver's fields {status, order, lat, lng} as read before.
local function free_driver(pool, seen, driver_hash, driver_id, order_id, at_ms, stale_ms)
  local d = redis.call('HMGET', driver_hash, 'status', 'order', 'lat', 'lng')
  if d[2] == order_id then
    redis.call('HSET', driver_hash, 'order', '', 'offer', '')
    local last = tonumber(redis.call('ZSCORE', seen, driver_id) or '0')
    to_pool(pool, driver_id, d[1], '', d[4], d[3], last, at_ms - tonumber(stale_ms))
  end
  return d
end
-- An offer is no longer pending: no longer due, and its driver's lease released when the lease
-- is still this offer's (its value is `token|order|offer`).
local function drop_offer(due, lease, offer_id)
  redis.call('ZREM', due, offer_id)
  local held = redis.call('GET', lease)
  if held and string.sub(held, -(#offer_id + 1)) == '|' .. offer_id then
    redis.call('DEL', lease)
  end
end
