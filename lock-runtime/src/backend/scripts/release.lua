-- Release a lock if, and only if, the caller owns it; wake its waiters.
-- KEYS[1] lock key
-- ARGV[1] owner token, ARGV[2] release channel
-- Returns 1 when released, 0 when the key is gone or another owner's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], '')
  return 1
end
return 0
