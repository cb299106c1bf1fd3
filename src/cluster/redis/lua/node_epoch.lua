local epoch = redis.call('GET', KEYS[1])
if not epoch then
  local now = redis.call('TIME')
  epoch = tostring(now[1]) .. string.format('%06d', tonumber(now[2]))
  redis.call('SET', KEYS[1], epoch)
end
return epoch
