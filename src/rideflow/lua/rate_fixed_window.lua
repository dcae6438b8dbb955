-- Fixed-window rate limit on Redis time.
-- KEYS[1] the client's key under this policy
-- ARGV[1] limit, [2] window ms
-- Returns {allowed 0/1, remaining, ms until the window resets, retry-after ms}.
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local start = now - now % window
local s = redis.call('HMGET', KEYS[1], 'start', 'count')
local count = 0
if tonumber(s[1]) == start then count = tonumber(s[2]) end
local reset = start + window - now
if count >= limit then return {0, 0, reset, reset} end
count = count + 1
redis.call('HSET', KEYS[1], 'start', start, 'count', count)
redis.call('PEXPIRE', KEYS[1], reset)
return {1, limit - count, reset, 0}
