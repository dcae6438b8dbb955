-- Record the start of jobs a worker is already running: entries that carry their job (see
-- job_submit) are run the moment they are first delivered, and this step follows. A job starts
-- when it is still pending and the entry's token is its next attempt; otherwise the worker
-- stops that run and records nothing of it: the job was cancelled, finished, or started from the
-- same entry by another worker that took it over (which then holds the entry; any other entry
-- is acknowledged here).
-- KEYS[1..3] queue streams high, default, low, [4] pending index, [5] processing index,
--     then per job: its hash
-- ARGV[1] group, [2] worker name, then per job: id, token, queue number (1..3), entry id
-- Returns per job 'started', or the status that refused it ('gone' when the job is no more).
local now = now_ms()
local out = {}
for i = 6, #KEYS do
  local base = 3 + (i - 6) * 4
  local id, token, queue, entry = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local j = redis.call('HMGET', KEYS[i], 'status', 'attempts')
  if j[1] == 'pending' and tonumber(j[2]) + 1 == tonumber(token) then
    redis.call('HSET', KEYS[i], 'status', 'processing', 'attempts', token, 'started', now,
      'worker', ARGV[2], 'entry', entry, 'queue', queue)
    redis.call('ZREM', KEYS[4], id)
    redis.call('ZADD', KEYS[5], now, id)
    out[#out + 1] = 'started'
  else
    if j[1] ~= 'processing' then redis.call('XACK', KEYS[tonumber(queue)], ARGV[1], entry) end
    out[#out + 1] = j[1] or 'gone'
  end
end
return out
