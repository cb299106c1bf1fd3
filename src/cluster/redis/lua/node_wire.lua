-- The wire the cluster's live nodes speak (broadcast format version and pub/sub commands):
-- kept for one node timeout past the last heartbeat that renewed it, so a cluster restarted
-- whole may change it. Renews it when it is this node's (or none is held).
-- KEYS[1]: the wire key. ARGV: this node's wire, node timeout ms.
-- Returns the wire held (this node's when it was free).
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then
  return held
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
