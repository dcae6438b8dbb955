-- Forget drivers whose last position is older than the staleness window: out of the pool and the
-- seen set, so searches stop finding them. Their next position brings them back.
-- KEYS[1] city pool, [2] city seen set
-- ARGV[1] staleness window ms, [2] most drivers to drop in one call
-- Returns how many were dropped.
local horizon = now_ms() - tonumber(ARGV[1])
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. horizon, 'LIMIT', 0,
  tonumber(ARGV[2]))
if #stale == 0 then return 0 end
redis.call('ZREM', KEYS[1], unpack(stale))
return redis.call('ZREM', KEYS[2], unpack(stale))
