-- Release a lock that has no queue (a Redlock server): delete it if, and only if, the
-- caller owns it, and announce on its channel that it is free.
-- KEYS[1] lock key, KEYS[2] its channel
-- ARGV[1] owner token
-- Returns 1 when released, 0 when the key is gone or another owner's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[2], '')
return 1
