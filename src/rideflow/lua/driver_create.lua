-- Register a driver in their city, offline and holding no order, unless the id is taken there.
-- KEYS[1] driver hash
-- ARGV[1] id, [2] name, [3] rating, [4] vehicle, [5] city
-- Returns 1 when created, 0 when the driver already exists.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'rating', ARGV[3],
  'vehicle', ARGV[4], 'city', ARGV[5], 'status', 'offline', 'order', '', 'offer', '', 'lapses', 0)
return 1
