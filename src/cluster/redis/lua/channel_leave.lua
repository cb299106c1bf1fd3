if stale_epoch(KEYS[6], ARGV[8]) then
  return redis.error_reply('EPOCH the cluster state this node knew was lost')
end
redis.call('SREM', KEYS[2], ARGV[4])
return leave_socket(KEYS[1], KEYS[5], KEYS[3], KEYS[4], ARGV[6], ARGV[7], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[5]))
