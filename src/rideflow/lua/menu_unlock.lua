-- Release a menu fill lock, only when it is still the caller's (its value the caller's token):
-- a lock that expired and was taken by another process is left alone.
-- KEYS[1] the lock; ARGV[1] the caller's token. Returns 1 when released, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
