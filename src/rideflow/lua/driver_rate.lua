-- Apply one rating to a driver once: a job run again after its worker died changes nothing.
-- The rating a driver registered with counts as ARGV[4] ratings (a prior), so that one early
-- rating moves the average a little instead of replacing it: the average is
-- (prior * weight + sum of ratings) / (weight + number of ratings).
-- KEYS[1] driver hash, [2] the driver's set of applied rating job ids
-- ARGV[1] job id, [2] rating (1..5), [3] retention s of the applied set, [4] prior weight (>= 0)
-- Returns {1, new rating, ratings count} when applied, {0, rating, count} when already applied,
-- {-1} when there is no such driver. The count is of ratings received, the prior not included.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
  -- The registered rating is kept aside at the first rating, before 'rating' becomes an average.
  redis.call('HSETNX', KEYS[1], 'rating_prior', redis.call('HGET', KEYS[1], 'rating'))
  local prior = tonumber(redis.call('HGET', KEYS[1], 'rating_prior'))
  local weight = tonumber(ARGV[4])
  local sum = redis.call('HINCRBYFLOAT', KEYS[1], 'rating_sum', ARGV[2])
  local n = redis.call('HINCRBY', KEYS[1], 'rating_count', 1)
  local average = (prior * weight + tonumber(sum)) / (weight + n)
  redis.call('HSET', KEYS[1], 'rating', string.format('%.2f', average))
  return {1, redis.call('HGET', KEYS[1], 'rating'), n}
end
local r = redis.call('HMGET', KEYS[1], 'rating', 'rating_count')
return {0, r[1], r[2] or 0}
