-- Return a food order's reserved stock, at most once (its reservation says `held` until then).
-- KEYS[1] the order's reservation hash, [2..] per item: stock count, buyers hash
-- ARGV[1..] the item ids of KEYS[2..] pairs, in order (read from the reservation beforehand;
--     a reservation never changes its items)
-- Returns {'RELEASED', units}; {'NONE'} when there is no held reservation (none made, released
-- already, or expired); {'MISMATCH'} when the items passed are not the reservation's.
local r = redis.call('HGETALL', KEYS[1])
if #r == 0 then return {'NONE'} end
local h = {}
local items = 0
for i = 1, #r, 2 do
  h[r[i]] = r[i + 1]
  if string.sub(r[i], 1, 5) == 'item:' then items = items + 1 end
end
if h['state'] ~= 'held' then return {'NONE'} end
if items ~= #ARGV then return {'MISMATCH'} end
for i = 1, #ARGV do
  if not h['item:' .. ARGV[i]] then return {'MISMATCH'} end
end
local units = 0
for i = 1, #ARGV do
  local qty = tonumber(h['item:' .. ARGV[i]])
  redis.call('INCRBY', KEYS[i * 2], qty)
  local left = redis.call('HINCRBY', KEYS[i * 2 + 1], h['customer'], -qty)
  if left <= 0 then redis.call('HDEL', KEYS[i * 2 + 1], h['customer']) end
  units = units + qty
end
redis.call('HSET', KEYS[1], 'state', 'released')
return {'RELEASED', units}
