-- Take a driver online or offline; online and free with a fresh position puts them in the pool.
-- KEYS[1] city pool, [2] city seen set, [3] driver hash
-- ARGV[1] driver id, [2] 'online' or 'offline', [3] staleness window ms
-- Returns the driver's hash as a flat field/value list (empty when there is no such driver).
local d = redis.call('HMGET', KEYS[3], 'status', 'order', 'lat', 'lng')
if not d[1] then return {} end
redis.call('HSET', KEYS[3], 'status', ARGV[2])
local seen = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
to_pool(KEYS[1], ARGV[1], ARGV[2], d[2], d[4], d[3], seen, now_ms() - tonumber(ARGV[3]))
return redis.call('HGETALL', KEYS[3])
