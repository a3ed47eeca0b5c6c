
-- Acquire a lock and take the next fencing token, atomically (unfenced acquires need no
-- script: SET NX PX).
-- KEYS[1] lock key, KEYS[2] fencing token
-- ARGV[1] owner token, ARGV[2] TTL in ms
-- Returns {1, fencing token} on success, {0, holder's PTTL} when busy.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, next_fence(KEYS[2], now_us(), ARGV[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
