//! The Lua of [`super::channel_state`]: every change of the cluster-wide channel state, each
//! one atomic, returning the transition it made and appending its webhook events.
//!
//! Keys of a channel: `{prefix}:{pN}:ch:{app}:{channel}:` + `sockets` (socket id → incarnation
//! `|` user id), `users` (user id → socket count), `infos` (user id → `user_info`), `flags`
//! (`occupied`: its `channel_occupied` was emitted; `version`: member notices published so far).
//! Of a partition: `owned:{incarnation}` (the
//! sockets an incarnation added), `pending` (held vacates and removes by due time), `events`
//! (the webhook stream).
//!
//! Member notices (`member_added` / `member_removed` for the sockets of every node) are published
//! by the scripts themselves, in the same atomic step as the change, each with the channel's
//! new version; a joiner's member list carries the version it was read at. So a node delivers to
//! a joiner exactly the notices after its list: never one already in it, never one missing.

/// Helpers every script shares: the time, appending one webhook event to the stream, and
/// publishing one member notice (the wire format of [`super::fanout`]).
///
/// Every script's last argument lists the apps that have webhook endpoints (one per line, or
/// `*` for all): only their events go into the streams, which nobody would read and trim for
/// the others. The one before it lists the apps that announce subscription counts, each with
/// its window in ms (`{app}\t{window}` per line).
pub const PRELUDE: &str = r"
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
  redis.call('PUBLISH', topic, 'h1\n' .. kind .. '\n' .. origin .. '\n' .. except .. '\n' .. version .. '\n' .. body)
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
  redis.call('PUBLISH', users_topic, 'h1\nw\n' .. origin .. '\n\n\n' .. online .. string.sub(channel, 7))
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
";

/// KEYS: sockets, users, infos, flags, owned, pending, stream, reaped, the app's occupied
/// channels in the partition, the channel's cached event, the partition's epoch.
/// ARGV: socket, incarnation, user id ('' off presence), user info, app, channel, owned entry,
/// topic, channel key stem, member limit (0: none), '1' on cache channels, the cluster's epoch,
/// 'r' to rebuild (after Redis lost its data: the socket was in before, so the channel's
/// occupancy and the member are restored without an event or a notice).
/// An error `EPOCH` when the partition's epoch is not the one given: the state was lost.
/// Returns {changed, subscription count, occupied now, member added now, count announcement
/// (see `count_changed`), version, cached event, members...}: on presence channels the member list (user id, user info, ...) as of `version`,
/// on cache channels the cached event ('' when none) as of `version`. `changed` is -1 when the
/// incarnation was reaped already (it is fenced and must not add sockets: nobody would reap them
/// again), -2 when the user would be one member too many.
pub const JOIN: &str = r"
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
";

/// KEYS: the channel's key stem (`...:ch:{app}:{channel}`), owned, pending, stream, the app's
/// occupied channels in the partition, the partition's epoch.
/// ARGV: socket, app, channel, owned entry, grace ms, topic, incarnation, the cluster's epoch.
/// Returns {changed, subscription count, vacated now, member removed now, count announcement,
/// the socket's user id or ''}; the error `EPOCH` as JOIN.
pub const LEAVE: &str = r"
if stale_epoch(KEYS[6], ARGV[8]) then
  return redis.error_reply('EPOCH the cluster state this node knew was lost')
end
redis.call('SREM', KEYS[2], ARGV[4])
return leave_socket(KEYS[1], KEYS[5], KEYS[3], KEYS[4], ARGV[6], ARGV[7], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[5]))
";

/// Removes up to `limit` sockets a dead incarnation left in one partition, as if each left, and
/// marks it reaped in the partition so a join it runs later (it was only paused) is refused;
/// marks older than a day go. KEYS: the dead incarnation's owned set, pending, stream, reaped. ARGV: the partition's channel key
/// prefix (`{prefix}:{pN}:ch:`), the dead incarnation, grace ms, limit, the topic prefix
/// (`{prefix}:bc:`), the reaping incarnation.
/// Returns {sockets removed, entries left}.
pub const REAP: &str = r"
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
";

/// Releases the partition's due holds whose channel is still empty or user still absent, and
/// announces the held subscription counts. KEYS: pending, stream. ARGV: the partition's key
/// prefix (`{prefix}:{pN}:ch:`), limit, the topic prefix (`{prefix}:bc:`), the sweeping
/// incarnation. Returns the number of events emitted. The channel keys are derived here; they share the
/// partition's hash tag, so they are in the script's slot.
pub const SWEEP: &str = r"
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
";

/// Keeps a cache channel's event and publishes it, in one step, with the channel's next
/// version: a joiner's cached event and the events after it never overlap or leave a gap.
/// KEYS: the cached event, flags. ARGV: ttl ms, the frame JSON, topic, the message up to its
/// version (`h1\ne\n{origin}\n{except}\n`), the framed bytes.
/// Returns the version.
pub const PUBLISH_CACHED: &str = r"
redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[1]))
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
if version == 1 then
  -- Numbered as the member notices are (see `next_version`).
  local t = redis.call('TIME')
  version = (t[1] * 1000 + math.floor(t[2] / 1000)) * 1000
  redis.call('HSET', KEYS[2], 'version', string.format('%d', version))
end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. string.format('%d', version) .. '\n' .. ARGV[5])
return version
";
