local holder = redis.call('GET', KEYS[1])
if holder then
  return {0, holder, redis.call('PTTL', KEYS[1])}
end
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], ms, ARGV[1])
return {1, '', 0}
