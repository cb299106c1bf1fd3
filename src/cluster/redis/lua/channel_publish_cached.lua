-- 'SPUBLISH' on Redis Cluster with sharded pub/sub (channel_scripts.rs rewrites this line).
local PUBLISH = 'PUBLISH'
redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[1]))
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
if version == 1 then
  -- Numbered as the member notices are (see `next_version`).
  local t = redis.call('TIME')
  version = (t[1] * 1000 + math.floor(t[2] / 1000)) * 1000
  redis.call('HSET', KEYS[2], 'version', string.format('%d', version))
end
redis.call(PUBLISH, ARGV[3], ARGV[4] .. string.format('%d', version) .. '\n' .. ARGV[5])
return version
