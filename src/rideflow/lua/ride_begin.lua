-- A dispatcher takes a ride up: QUEUED becomes SEARCHING; a ride past searching is acknowledged
-- and dropped so that redelivered or retried entries are handled idempotently.
-- KEYS[1] ride hash, KEYS[2] city request stream, KEYS[3] city retry set
-- ARGV[1] ride id, [2] stream entry id ('' when the ride came from the retry set), [3] group
-- Returns {'SEARCHING', plat, plng} to go on, or {status} (or {'GONE'}) when there is nothing to do.
local r = redis.call('HMGET', KEYS[1], 'status', 'plat', 'plng')
local status = r[1]
if status == 'QUEUED' then
  local t = redis.call('TIME')
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('HSET', KEYS[1], 'status', 'SEARCHING', 't_SEARCHING', string.format('%.0f', now_us))
  status = 'SEARCHING'
end
if status == 'SEARCHING' then return {status, r[2], r[3]} end
if ARGV[2] ~= '' then redis.call('XACK', KEYS[2], ARGV[3], ARGV[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
return {status or 'GONE'}
