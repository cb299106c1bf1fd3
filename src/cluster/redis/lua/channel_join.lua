local socket, inc, user, info, app, channel, entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local topic, ch, max_members, cached = ARGV[8], ARGV[9], tonumber(ARGV[10]), ARGV[11] == '1'
local rebuild = ARGV[13] == 'r'
if stale_epoch(KEYS[11], ARGV[12]) then
  return redis.error_reply('EPOCH the cluster state this node knew was lost')
end
local function version_now()
  return tonumber(redis.call('HGET', KEYS[4], 'version') or '0')
end
local function reply(changed, count, occupied, added, announced, version)
  local result = {changed, count, occupied, added, announced, version}
  table.insert(result, cached and (redis.call('GET', KEYS[10]) or '') or '')
  if user ~= '' then
    for _, field in ipairs(redis.call('HGETALL', KEYS[3])) do
      table.insert(result, field)
    end
  end
  return result
end
if redis.call('ZSCORE', KEYS[8], inc) then
  return {-1, redis.call('HLEN', KEYS[1]), 0, 0, 0, 0, ''}
end
if redis.call('HEXISTS', KEYS[1], socket) == 1 then
  return reply(0, redis.call('HLEN', KEYS[1]), 0, 0, 0, version_now())
end
if user ~= '' and max_members > 0 and redis.call('HEXISTS', KEYS[2], user) == 0
    and redis.call('HLEN', KEYS[2]) >= max_members then
  return {-2, redis.call('HLEN', KEYS[1]), 0, 0, 0, 0, ''}
end
redis.call('HSET', KEYS[1], socket, inc .. '|' .. user)
redis.call('SADD', KEYS[5], entry)
local count = redis.call('HLEN', KEYS[1])
local occupied, added = 0, 0
if count == 1 then
  occupied = 1
  -- The index serves channel listings, which never show a user's own channel: so a listing
  -- costs nothing per user online.
  if not is_user_channel(channel) then
    redis.call('SADD', KEYS[9], channel)
  end
  if not rebuild then
    watchlist_notice(topic, inc, channel, '1')
  end
  local held = redis.call('ZREM', KEYS[6], 'v\n' .. app .. '\n' .. channel)
  if redis.call('HSETNX', KEYS[4], 'occupied', '1') == 1 and held == 0 and not rebuild then
    emit(KEYS[7], 'channel_occupied', app, channel)
  end
end
if user ~= '' and redis.call('HINCRBY', KEYS[2], user, 1) == 1 then
  added = 1
  redis.call('HSET', KEYS[3], user, info)
  local held = redis.call('ZREM', KEYS[6], 'r\n' .. app .. '\n' .. channel .. '\n' .. user)
  if not rebuild then
    notice(topic, 'a', inc, socket, ch, #user .. ':' .. user .. info)
    if held == 0 then
      emit(KEYS[7], 'member_added', app, channel, user)
    end
  end
end
-- The joiner's list is as of before the count's notice (counting changes no member and no
-- cached event): so the joiner gets the count that includes it.
local version = version_now()
-- A rebuilt socket was counted before: its count was announced already.
local announced = 0
if not rebuild then
  announced = count_changed(ch, KEYS[6], KEYS[7], topic, inc, app, channel)
end
return reply(1, count, occupied, added, announced, version)
