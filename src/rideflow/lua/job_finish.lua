-- Record the outcome of a batch of attempts. Success: completed, with its result. Failure: pending
-- again after an exponential backoff with jitter (through the delayed set) while retries remain,
-- else failed and into the dead-letter stream. An attempt whose token is no longer the job's (the
-- job was reclaimed and started again elsewhere) is refused and its entry left alone.
-- KEYS[1..3] queue streams high, default, low, [4] delayed set, [5] dead-letter stream,
--     [6] processing index, [7] completed index, [8] failed index, [9] pending index,
--     [10] finished-jobs stream (what the recorder writes to SQL), then per job: job hash, its attempts list, its task's stats hash, its task's recent list
-- ARGV[1] group, [2] retention s of a finished job, [3] base backoff ms, [4] most backoff ms,
--     [5] recent completions kept per task, [6] finished-jobs stream cap (0: uncapped),
--     then per job: id, token, queue number (1..3), 'ok' or 'error', result JSON or error text,
--     run time us, jitter factor in [0, 1)
-- Returns per job its new status ('completed', 'pending', 'failed') or 'stale'.
local now_ms = now_ms() -- the prelude's clock, read once
local ttl = tonumber(ARGV[2])
local out = {}
for i = 11, #KEYS, 4 do
  local job, attempts, stats, recent = KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3]
  local base = 7 + (i - 11) / 4 * 7
  local id, token = ARGV[base], ARGV[base + 1]
  local outcome, text, run_us = ARGV[base + 3], ARGV[base + 4], tonumber(ARGV[base + 5])
  local j = redis.call('HMGET', job, 'status', 'attempts', 'retries', 'max_retries', 'priority',
    'run_at', 'started', 'worker', 'entry', 'queue')
  if j[1] ~= 'processing' or j[2] ~= token then
    out[#out + 1] = 'stale'
  else
    local record = {attempt = tonumber(token), worker = j[8], started = tonumber(j[7]),
      finished = now_ms, outcome = outcome}
    if outcome ~= 'ok' then record.error = text end
    redis.call('RPUSH', attempts, cjson.encode(record))
    -- Acknowledged where the job's own start recorded it (entry ids repeat across queues).
    redis.call('XACK', KEYS[tonumber(j[10] or ARGV[base + 2])], ARGV[1], j[9])
    redis.call('ZREM', KEYS[6], id)
    local status
    if outcome == 'ok' then
      status = 'completed'
      redis.call('HSET', job, 'status', status, 'result', text, 'finished', now_ms)
      redis.call('HDEL', job, 'error')
      redis.call('ZADD', KEYS[7], now_ms, id)
      redis.call('HINCRBY', stats, 'completed', 1)
      local wait_us = (tonumber(j[7]) - tonumber(j[6])) * 1000
      redis.call('LPUSH', recent, now_ms .. ',' .. run_us .. ',' .. wait_us)
      redis.call('LTRIM', recent, 0, tonumber(ARGV[5]) - 1)
    elseif tonumber(j[3]) < tonumber(j[4]) then
      status = 'pending'
      local retries = redis.call('HINCRBY', job, 'retries', 1)
      local delay = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (retries - 1))
      delay = math.floor(delay * (1 - 0.5 * tonumber(ARGV[base + 6])))
      redis.call('HSET', job, 'status', status, 'error', text, 'run_at', now_ms + delay)
      redis.call('HDEL', job, 'entry') -- acknowledged above; the retry gets an entry of its own
      redis.call('ZADD', KEYS[4], now_ms + delay, j[5] .. ':' .. id)
      redis.call('ZADD', KEYS[9], now_ms, id)
      redis.call('HINCRBY', stats, 'retried', 1)
    else
      status = 'failed'
      redis.call('HSET', job, 'status', status, 'error', text, 'finished', now_ms)
      local dead = redis.call('XADD', KEYS[5], 'MAXLEN', '~', 10000, '*', 'job', id,
        'task', redis.call('HGET', job, 'task'), 'error', text, 'at', now_ms)
      redis.call('HSET', job, 'dead_entry', dead)
      redis.call('ZADD', KEYS[8], now_ms, id)
      redis.call('HINCRBY', stats, 'failed', 1)
    end
    if status ~= 'pending' then
      finished_entry(KEYS[10], ARGV[6], job, id, status, now_ms)
      redis.call('EXPIRE', job, ttl)
      redis.call('EXPIRE', attempts, ttl)
    end
    out[#out + 1] = status
  end
end
return out
