-- Start a batch of delivered jobs: each pending one becomes processing under a new fencing token
-- (its attempt number). An entry of a job that is already processing was reclaimed from a worker
-- that stopped renewing its claim: the job is started again under a new token (the old worker's
-- result will be refused), unless it has lost its worker too often, then it fails. Entries of
-- jobs already finished or cancelled are acknowledged and skipped.
-- KEYS[1..3] queue streams high, default, low, [4] dead-letter stream, [5] pending index,
--     [6] processing index, [7] failed index, [8] finished-jobs stream, then per job: its hash, its attempts list
-- ARGV[1] group, [2] worker name, [3] most reclaims before a job fails, [4] retention s of a
--     finished job, [5] finished-jobs stream cap (0: uncapped), then per job: queue number (1..3), entry id, '1' when the entry was reclaimed
-- Returns per started job {id, token, task, payload, timeout s, created ms, run at ms, entry,
-- queue number}. The queue and entry are kept in the job's hash: the queues may hand out the
-- same entry id, so an entry is known by both.
local now_ms = now_ms() -- the prelude's clock, read once
local out = {}
for i = 9, #KEYS, 2 do
  local base = 6 + (i - 9) / 2 * 3
  local queue, entry, reclaimed = KEYS[tonumber(ARGV[base])], ARGV[base + 1], ARGV[base + 2]
  local j = redis.call('HMGET', KEYS[i], 'id', 'status', 'lost', 'task', 'payload', 'timeout',
    'created', 'run_at', 'attempts')
  local start = false
  if j[2] == 'pending' then
    start = true
  elseif j[2] == 'processing' and reclaimed == '1' then
    local lost = redis.call('HINCRBY', KEYS[i], 'lost', 1)
    if lost > tonumber(ARGV[3]) then
      local why = 'lost its worker ' .. lost .. ' times'
      redis.call('HSET', KEYS[i], 'status', 'failed', 'error', why, 'finished', now_ms)
      redis.call('RPUSH', KEYS[i + 1], cjson.encode({attempt = tonumber(j[9]),
        worker = redis.call('HGET', KEYS[i], 'worker'), started = tonumber(
        redis.call('HGET', KEYS[i], 'started') or now_ms), finished = now_ms,
        outcome = 'error', error = why}))
      redis.call('EXPIRE', KEYS[i], tonumber(ARGV[4]))
      redis.call('EXPIRE', KEYS[i + 1], tonumber(ARGV[4]))
      local dead = redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', 'job', j[1],
        'task', j[4], 'error', why, 'at', now_ms)
      redis.call('HSET', KEYS[i], 'dead_entry', dead)
      finished_entry(KEYS[8], ARGV[5], KEYS[i], j[1], 'failed', now_ms)
      redis.call('ZREM', KEYS[6], j[1])
      redis.call('ZADD', KEYS[7], now_ms, j[1])
      redis.call('XACK', queue, ARGV[1], entry)
    else
      start = true
    end
  else
    redis.call('XACK', queue, ARGV[1], entry)
  end
  if start then
    local token = tonumber(j[9]) + 1
    redis.call('HSET', KEYS[i], 'status', 'processing', 'attempts', token, 'started', now_ms,
      'worker', ARGV[2], 'entry', entry, 'queue', ARGV[base])
    redis.call('ZREM', KEYS[5], j[1])
    redis.call('ZADD', KEYS[6], now_ms, j[1])
    out[#out + 1] = {j[1], token, j[4], j[5], j[6], j[7], j[8], entry, tonumber(ARGV[base])}
  end
end
return out
