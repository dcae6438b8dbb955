-- Start a refresh-token family (a login) with its first token.
-- KEYS[1] the token's key, KEYS[2] the family's key, KEYS[3] the user's families
-- ARGV[1] family id, [2] user id, [3] TTL ms
-- Returns 1.
local family, user, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
redis.call('HSET', KEYS[2], 'user', user, 'created', now)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('HSET', KEYS[1], 'family', family, 'user', user, 'state', 'live')
redis.call('PEXPIRE', KEYS[1], ttl)
-- Families past their time are forgotten here, so the set stays as small as the live logins.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZADD', KEYS[3], now + ttl, family)
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
