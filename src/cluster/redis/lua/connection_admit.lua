-- An app's connections, counted for the whole cluster: one count per incarnation.
-- KEYS[1]: the app's counts (incarnation -> connections); ARGV[1]: this incarnation;
-- ARGV[2]: the app's max_connections.
-- Adds one for this incarnation unless the cluster is at the max: 1 when added, 0 when full.
local total = 0
for _, count in ipairs(redis.call('HVALS', KEYS[1])) do
  total = total + tonumber(count)
end
if total >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
