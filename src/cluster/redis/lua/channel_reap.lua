local base, dead, grace = ARGV[1], ARGV[2], tonumber(ARGV[3])
local topics, reaper = ARGV[5], ARGV[6]
local now = now_ms()
redis.call('ZADD', KEYS[4], now, dead)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 86400000)
local entries = redis.call('SPOP', KEYS[1], tonumber(ARGV[4]))
local removed = 0
for _, entry in ipairs(entries) do
  local app, channel, socket = string.match(entry, '^([^\n]*)\n([^\n]*)\n(.*)$')
  local ch = base .. app .. ':' .. channel
  local topic = topics .. app .. ':' .. channel
  local index = string.sub(base, 1, -4) .. 'occupied:' .. app
  removed = removed + leave_socket(ch, index, KEYS[2], KEYS[3], topic, reaper, socket, app, channel, grace, dead)[1]
end
return {removed, redis.call('SCARD', KEYS[1])}
