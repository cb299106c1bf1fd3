local holder = redis.call('GET', KEYS[1])
if (holder and holder ~= ARGV[1]) or not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
local now = redis.call('TIME')
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now[1] * 1000 + math.floor(now[2] / 1000), ARGV[1])
return 1
