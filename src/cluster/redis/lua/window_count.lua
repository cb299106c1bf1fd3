-- A fixed-window counter shared by every node (rate limits, quotas).
-- KEYS[1]: the counter; ARGV[1]: the window in ms; ARGV[2]: the hits to add.
-- Returns {count, ms until the window ends}: the window starts at the key's first hit.
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
