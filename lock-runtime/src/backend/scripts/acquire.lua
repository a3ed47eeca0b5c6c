-- Acquire a lock atomically.
-- KEYS[1] lock key, KEYS[2] fencing counter
-- ARGV[1] owner token, ARGV[2] TTL in ms, ARGV[3] '1' to INCR the fencing counter
-- Returns {1, fencing token or 0} on success, {0, holder's PTTL} when busy.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] == '1' then
    return {1, redis.call('INCR', KEYS[2])}
  end
  return {1, 0}
end
return {0, redis.call('PTTL', KEYS[1])}
