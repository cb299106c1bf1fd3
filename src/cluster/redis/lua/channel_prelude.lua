-- 'SPUBLISH' on Redis Cluster with sharded pub/sub (channel_scripts.rs rewrites this line):
-- a topic carries its channel's partition tag, so it is in this script's slot.
local PUBLISH = 'PUBLISH'
local hooked, every_app = {}, ARGV[#ARGV] == '*'
for app in string.gmatch(ARGV[#ARGV], '[^\n]+') do
  hooked[app] = true
end
local count_windows = {}
for app, window in string.gmatch(ARGV[#ARGV - 1], '([^\n\t]+)\t(%d+)') do
  count_windows[app] = tonumber(window)
end
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
-- A channel's first notice starts its versions at a thousand per millisecond of Redis time, so
-- a channel whose flags were lost (FLUSHALL, a restart without persistence) numbers its notices
-- above everything nodes saw before; formatted with %d, as Lua would print them as floats.
local function next_version(flags)
  local version = redis.call('HINCRBY', flags, 'version', 1)
  if version == 1 then
    version = now_ms() * 1000
    redis.call('HSET', flags, 'version', string.format('%d', version))
  end
  return string.format('%d', version)
end
local function notice(topic, kind, origin, except, ch, body)
  local version = next_version(ch .. ':flags')
  redis.call(PUBLISH, topic, 'h1\n' .. kind .. '\n' .. origin .. '\n' .. except .. '\n' .. version .. '\n' .. body)
end
-- A user's own channel (`#user:{id}`) became occupied or empty: the user went online or
-- offline. Every node hears it on the app's user topic (the channel's topic with `#users` in
-- place of the channel), in the same atomic step as the change, and tells its watchers.
local function is_user_channel(channel)
  return string.sub(channel, 1, 6) == '#user:'
end
local function watchlist_notice(topic, origin, channel, online)
  if not is_user_channel(channel) then
    return
  end
  local users_topic = string.sub(topic, 1, #topic - #channel) .. '#users'
  redis.call(PUBLISH, users_topic, 'h1\nw\n' .. origin .. '\n\n\n' .. online .. string.sub(channel, 7))
end
-- The state was lost or rebuilt since this node read the cluster's epoch (`''`: not checked).
local function stale_epoch(key, epoch)
  return epoch ~= '' and redis.call('GET', key) ~= epoch
end
local function emit(stream, name, app, channel, user)
  if not (every_app or hooked[app]) then
    return
  end
  if user and user ~= '' then
    redis.call('XADD', stream, '*', 'name', name, 'app', app, 'channel', channel, 'user_id', user, 'time_ms', now_ms())
  else
    redis.call('XADD', stream, '*', 'name', name, 'app', app, 'channel', channel, 'time_ms', now_ms())
  end
end

-- A vacated channel's flags go with it, so a channel used once costs nothing afterwards; its
-- next notice numbers from Redis time again (see `next_version`), above every earlier one.
-- Returns whether its `channel_occupied` had been emitted (so `channel_vacated` is due).
local function forget_flags(ch)
  local occupied = redis.call('HEXISTS', ch .. ':flags', 'occupied') == 1
  redis.call('DEL', ch .. ':flags')
  return occupied
end

-- The app's count window (ms) when the channel announces subscription counts: public and
-- private channels only, as on one node (presence has its member count; Java clients try to
-- decrypt internal events of encrypted channels).
local function count_window(app, channel)
  local window = count_windows[app]
  if not window then
    return nil
  end
  for _, prefix in ipairs({'presence-', 'private-encrypted-', '#server-to-user-', '#user:'}) do
    if string.sub(channel, 1, #prefix) == prefix then
      return nil
    end
  end
  return window
end
-- Announces the channel's subscription count as it is now: a notice to the subscribers on
-- every node (not for 0: nobody is left) and the webhook event.
local function announce_count(ch, pending, stream, topic, origin, app, channel)
  local count = redis.call('HLEN', ch .. ':sockets')
  redis.call('ZREM', pending, 'c\n' .. app .. '\n' .. channel)
  if count > 0 then
    notice(topic, 'c', origin, '', ch, tostring(count))
    redis.call('HSET', ch .. ':flags', 'count_at', string.format('%d', now_ms()))
  else
    -- An empty channel needs no window: nobody is left to flood.
    redis.call('HDEL', ch .. ':flags', 'count_at')
  end
  if every_app or hooked[app] then
    redis.call('XADD', stream, '*', 'name', 'subscription_count', 'app', app, 'channel', channel, 'subscription_count', count, 'time_ms', now_ms())
  end
end
-- The channel's count changed: announced at once after a quiet window; within one, held until
-- the window ends (every change meanwhile goes out in that one announcement, with the count as
-- it is then). Returns -1 when announced now, the ms until the hold is due when this change
-- started one, 0 otherwise (not counted, or a hold is pending already).
local function count_changed(ch, pending, stream, topic, origin, app, channel)
  local window = count_window(app, channel)
  if not window then
    return 0
  end
  local last, now = tonumber(redis.call('HGET', ch .. ':flags', 'count_at') or ''), now_ms()
  if window == 0 or not last or now >= last + window then
    announce_count(ch, pending, stream, topic, origin, app, channel)
    return -1
  end
  local held = redis.call('ZADD', pending, 'NX', last + window, 'c\n' .. app .. '\n' .. channel)
  return held == 1 and (last + window - now) or 0
end

-- Removes a socket from a channel whose keys start with `ch` (`...:ch:{app}:{channel}`); with
-- `owner`, only if that incarnation holds it; `origin` publishes the notice on `topic`; `index`
-- is the app's set of occupied channels in the partition.
-- Returns {changed, count, vacated, removed, count announcement (see `count_changed`), the
-- socket's user id ('' when it had none or was not there)}.
local function leave_socket(ch, index, pending, stream, topic, origin, socket, app, channel, grace, owner)
  local sockets = ch .. ':sockets'
  local held = redis.call('HGET', sockets, socket)
  local bar = held and string.find(held, '|', 1, true)
  if not held or (owner and string.sub(held, 1, bar - 1) ~= owner) then
    return {0, redis.call('HLEN', sockets), 0, 0, 0, ''}
  end
  redis.call('HDEL', sockets, socket)
  local user = string.sub(held, bar + 1)
  local count = redis.call('HLEN', sockets)
  local vacated, removed = 0, 0
  local due = now_ms() + grace
  if user ~= '' and redis.call('HINCRBY', ch .. ':users', user, -1) <= 0 then
    removed = 1
    redis.call('HDEL', ch .. ':users', user)
    redis.call('HDEL', ch .. ':infos', user)
    notice(topic, 'r', origin, '', ch, user)
    if grace > 0 then
      redis.call('ZADD', pending, due, 'r\n' .. app .. '\n' .. channel .. '\n' .. user)
    else
      emit(stream, 'member_removed', app, channel, user)
    end
  end
  if count == 0 then
    vacated = 1
    -- (A user's own channel is never in the listing index: see JOIN.)
    redis.call('SREM', index, channel)
    watchlist_notice(topic, origin, channel, '0')
    if grace > 0 then
      redis.call('ZADD', pending, due, 'v\n' .. app .. '\n' .. channel)
    elseif forget_flags(ch) then
      emit(stream, 'channel_vacated', app, channel)
    end
  end
  local announced = count_changed(ch, pending, stream, topic, origin, app, channel)
  return {1, count, vacated, removed, announced, user}
end
