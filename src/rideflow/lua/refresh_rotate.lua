-- Rotate a refresh token: the presented one is marked used and a new one issued in its family.
-- Presenting a token already used (a rotated one: a copy in someone else's hands) revokes the
-- whole family, so the newest token of the chain fails too.
-- KEYS[1] the presented token's key, KEYS[2] its family's key, KEYS[3] the new token's key,
-- KEYS[4] the user's families
-- ARGV[1] family id and [2] user id (as the caller read them from KEYS[1]), [3] TTL ms
-- Returns 'ok', 'unknown' (no such token, or not of that family and user), 'revoked' (its
-- family is gone: logged out, revoked or expired) or 'reuse' (it was used: family revoked now).
local family, user, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('HMGET', KEYS[1], 'family', 'user', 'state')
if not t[1] or t[1] ~= family or t[2] ~= user then return 'unknown' end
if redis.call('EXISTS', KEYS[2]) == 0 then return 'revoked' end
if t[3] ~= 'live' then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[4], family)
  return 'reuse'
end
local now = now_ms()
-- The used token is kept to its own expiry: a copy presented later is recognised as reuse.
redis.call('HSET', KEYS[1], 'state', 'used')
redis.call('HSET', KEYS[3], 'family', family, 'user', user, 'state', 'live')
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[4], now + ttl, family)
redis.call('PEXPIRE', KEYS[4], ttl)
return 'ok'
