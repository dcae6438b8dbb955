-- Count a trip PIN presented for an order: wrong ones are counted for a window, and at the limit
-- the step is locked for the window (measured from that last miss) and the order's own stream
-- records it (not the city stream: it is not a transition).
-- KEYS: misses counter, the order's event stream
-- ARGV: order cap, order id, 1 when the PIN was right, the limit, the window ms
-- Returns {'OK'}, {'WRONG', misses left}, or {'LOCKED', ms until the lock ends}.
local misses = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit, window = tonumber(ARGV[4]), tonumber(ARGV[5])
if misses >= limit then
  return {'LOCKED', redis.call('PTTL', KEYS[1])}
end
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[1])
  return {'OK', 0}
end
misses = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], window)
if misses >= limit then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'status', 'PIN_LOCKED',
    'at', us_text(now_us()), 'reason', limit .. ' wrong trip PINs')
  return {'LOCKED', window}
end
return {'WRONG', limit - misses}
