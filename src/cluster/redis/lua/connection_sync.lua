-- Corrects an incarnation's count of an app's connections and forgets the incarnations that
-- left the cluster (reaped or gone), so a dead node's connections stop counting.
-- KEYS[1]: the app's counts; ARGV[1]: this incarnation; ARGV[2]: its connections now;
-- ARGV[3..]: the live incarnations.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local live = {}
for i = 3, #ARGV do
  live[ARGV[i]] = true
end
for _, incarnation in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not live[incarnation] then
    redis.call('HDEL', KEYS[1], incarnation)
  end
end
return 0
