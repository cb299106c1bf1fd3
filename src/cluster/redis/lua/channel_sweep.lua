local base, limit, topics, origin = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, limit)
local emitted = 0
for _, hold in ipairs(due) do
  redis.call('ZREM', KEYS[1], hold)
  local kind, app, channel, user = string.match(hold, '^(%a)\n([^\n]*)\n([^\n]*)\n?(.*)$')
  local keys = base .. app .. ':' .. channel
  if kind == 'v' then
    if redis.call('HLEN', keys .. ':sockets') == 0 and forget_flags(keys) then
      emit(KEYS[2], 'channel_vacated', app, channel)
      emitted = emitted + 1
    end
  elseif kind == 'r' then
    if redis.call('HEXISTS', keys .. ':users', user) == 0 then
      emit(KEYS[2], 'member_removed', app, channel, user)
      emitted = emitted + 1
    end
  elseif kind == 'c' then
    announce_count(keys, KEYS[1], KEYS[2], topics .. app .. ':' .. channel, origin, app, channel)
    emitted = emitted + 1
  end
end
return emitted
