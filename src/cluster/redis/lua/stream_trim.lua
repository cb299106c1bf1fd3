local lowest
for _, endpoint in ipairs(ARGV) do
  local cursor = redis.call('HGET', KEYS[1], endpoint)
  if not cursor then
    return 0
  end
  local ms, seq = string.match(cursor, '^(%d+)-(%d+)$')
  ms, seq = tonumber(ms), tonumber(seq)
  if not lowest or ms < lowest[1] or (ms == lowest[1] and seq < lowest[2]) then
    lowest = {ms, seq}
  end
end
if not lowest then
  return 0
end
-- MINID keeps the lowest cursor's own entry: the next entry id is what is needed.
return redis.call('XTRIM', KEYS[2], 'MINID', lowest[1] .. '-' .. (lowest[2] + 1))
