-- Token-bucket rate limit on Redis time: `limit` tokens refill per window, up to `burst`.
-- KEYS[1] the client's key under this policy
-- ARGV[1] limit, [2] window ms, [3] burst (bucket size)
-- Returns {allowed 0/1, remaining whole tokens, ms until the bucket is full, retry-after ms}.
local rate = tonumber(ARGV[1]) / tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local now = now_us() / 1000
local s = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = burst
if s[1] then tokens = math.min(burst, tonumber(s[1]) + (now - tonumber(s[2])) * rate) end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.3f', now))
local full = math.ceil((burst - tokens) / rate)
redis.call('PEXPIRE', KEYS[1], full + 1000)
if allowed == 1 then return {1, math.floor(tokens), full, 0} end
return {0, 0, full, math.ceil((1 - tokens) / rate)}
