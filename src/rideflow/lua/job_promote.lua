-- Move delayed jobs whose time has come onto their priority's queue.
-- KEYS[1] delayed set, [2..4] queue streams high, default, low
-- ARGV[1] most jobs to move
-- Returns how many were moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0,
  tonumber(ARGV[1]))
local queues = {high = KEYS[2], default = KEYS[3], low = KEYS[4]}
for _, member in ipairs(due) do
  local sep = string.find(member, ':', 1, true)
  local queue = queues[string.sub(member, 1, sep - 1)] or KEYS[3]
  redis.call('XADD', queue, '*', 'job', string.sub(member, sep + 1))
  redis.call('ZREM', KEYS[1], member)
end
return #due
