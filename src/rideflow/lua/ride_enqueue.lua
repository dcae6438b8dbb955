-- Accept a ride: store it as QUEUED and append it to its city's request stream, in one step.
-- KEYS[1] ride hash, [2] city request stream, [3] the ride's event stream,
--     [4] (optional) idempotency key
-- ARGV[1] ride id, [2] rider id, [3] pickup 'lat,lng', [4] dropoff 'lat,lng',
--      [5] search deadline in ms from now, [6] ranking strategy;
--      with KEYS[4]: [7] its ttl s, [8] request fingerprint
-- Returns {1, ride id} when stored, {0, ride id} when the idempotency key already names a ride
-- with the same fingerprint, {-1, ride id} when it names one with another.
if KEYS[4] then
  local prior = redis.call('GET', KEYS[4])
  if prior then
    local sep = string.find(prior, '|', 1, true)
    local prior_id, prior_print = string.sub(prior, 1, sep - 1), string.sub(prior, sep + 1)
    if prior_print == ARGV[8] then return {0, prior_id} end
    return {-1, prior_id}
  end
end
-- A replayed call (its first reply lost) must not reset a ride that has moved on.
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ARGV[1]} end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local deadline_us = now_us + tonumber(ARGV[5]) * 1000
redis.call('HSET', KEYS[1],
  'id', ARGV[1], 'rider_id', ARGV[2], 'pickup', ARGV[3], 'dropoff', ARGV[4],
  'status', 'QUEUED', 'attempts', 0, 'strategy', ARGV[6],
  'deadline', string.format('%.0f', deadline_us), 't_QUEUED', string.format('%.0f', now_us))
redis.call('XADD', KEYS[2], '*', 'ride', ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 64, '*', 'status', 'QUEUED', 'at', string.format('%.0f', now_us))
if KEYS[4] then
  redis.call('SET', KEYS[4], ARGV[1] .. '|' .. ARGV[8], 'EX', tonumber(ARGV[7]))
end
return {1, ARGV[1]}
