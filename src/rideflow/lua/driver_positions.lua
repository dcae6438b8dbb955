-- Record driver positions of one city; an available driver joins (or stays in) the pool.
-- A position older than the one already held is ignored, so late packets never move a driver back.
-- A driver holding an order has the position published on the city's tracking channel (one
-- PUBLISH in this same call, nothing for the free drivers who make most of the traffic), as
-- `driver|order|lat|lng|fix ms`, for the WebSocket gateways of the API processes.
-- KEYS[1] city pool, [2] city seen set, [3..] driver hashes in ARGV order
-- ARGV[1] staleness window ms, then per driver: id, lng, lat, fix time ms (0 = now), speed m/s ('' unknown),
--     then (optional) the city's tracking channel: absent or '', nothing is published
-- Returns one code per driver: 1 recorded, 0 no such driver in this city, 2 older than held.
local now = now_ms()
local fresh_after = now - tonumber(ARGV[1])
local channel = ARGV[2 + (#KEYS - 2) * 5] or ''
local out = {}
for i = 3, #KEYS do
  local base = 2 + (i - 3) * 5
  local id, lng, lat = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local at, speed = tonumber(ARGV[base + 3]), ARGV[base + 4]
  if at == 0 or at > now then at = now end
  local d = redis.call('HMGET', KEYS[i], 'status', 'order', 'seen')
  if not d[1] then
    out[#out + 1] = 0
  elseif d[3] and tonumber(d[3]) > at then
    out[#out + 1] = 2
  else
    redis.call('HSET', KEYS[i], 'lat', lat, 'lng', lng, 'seen', at)
    if speed ~= '' then redis.call('HSET', KEYS[i], 'speed', speed) end
    redis.call('ZADD', KEYS[2], at, id)
    to_pool(KEYS[1], id, d[1], d[2], lng, lat, at, fresh_after)
    if channel ~= '' and (d[2] or '') ~= '' then
      local fix = id .. '|' .. d[2] .. '|' .. lat .. '|' .. lng .. '|' .. us_text(at)
      redis.call('PUBLISH', channel, fix)
    end
    out[#out + 1] = 1
  end
end
return out
