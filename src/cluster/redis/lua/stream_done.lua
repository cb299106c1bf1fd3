local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
  if holder or redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[4] .. '\n' .. ARGV[3] then
    return 0
  end
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
