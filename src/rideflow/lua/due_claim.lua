-- Claim members of a due-time sorted set (orders due for another search, offers due to lapse)
-- by pushing their score a lease into the future, so a dispatcher that dies holding them does not
-- lose them: they come due again after the lease.
-- KEYS[1] the sorted set (member -> due time in ms)
-- ARGV[1] lease ms, [2] most members to claim
-- Returns the claimed members.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id)
end
return due
