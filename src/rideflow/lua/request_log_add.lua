-- Append a batch of request-log entries to the request-log stream, one entry each, capped.
-- One call for a whole buffer: the API process packs one command instead of a pipeline of XADDs.
-- KEYS[1] request-log stream
-- ARGV[1] cap (MAXLEN ~), then per entry: the number of its field, value pairs, then the pairs
-- Returns how many entries were added.
local cap, i, added = ARGV[1], 2, 0
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', cap, '*', unpack(ARGV, i + 1, i + 2 * n))
  i = i + 1 + 2 * n
  added = added + 1
end
return added
