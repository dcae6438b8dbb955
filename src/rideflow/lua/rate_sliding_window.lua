-- Sliding-window (log) rate limit on Redis time: a sorted set of the admitted hits.
-- KEYS[1] the client's key under this policy
-- ARGV[1] limit, [2] window ms, [3] a member unique to this hit
-- Returns {allowed 0/1, remaining, ms until the oldest hit leaves the window, retry-after ms}.
local limit, window_us = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000
local now = now_us()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window_us)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  count = count + 1
  allowed = 1
end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
local frees = math.max(1, math.ceil((oldest + window_us - now) / 1000))
if allowed == 1 then return {1, limit - count, frees, 0} end
return {0, 0, frees, frees}
