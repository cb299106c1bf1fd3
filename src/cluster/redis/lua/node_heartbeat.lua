local holder = redis.call('GET', KEYS[1])
local last = redis.call('ZSCORE', KEYS[2], ARGV[1])
if (holder and holder ~= ARGV[1]) or not last then
  return 0
end
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
if not holder or tonumber(last) < ms - tonumber(ARGV[2]) then
  return 2
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ms, ARGV[1])
return 1
