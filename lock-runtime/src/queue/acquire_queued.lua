
-- One attempt of a waiter that listens for hand-offs: take the lock if it is free or was
-- handed to us by a release; otherwise join the queue (or stay in it).
-- KEYS[1] lock key, KEYS[2] fencing token, KEYS[3] queue, KEYS[4] waiting
-- ARGV[1] owner token, ARGV[2] TTL in ms, ARGV[3] '1' for a fencing token, ARGV[4] how
-- long this entry stays alive without another attempt (ms), ARGV[5] how long a lock
-- handed to us waits to be claimed (ms), ARGV[6] 'p' or 's' (PUBLISH or SPUBLISH),
-- ARGV[7] the channel we hear hand-offs on
-- Returns {1, fencing token or 0} on success, {0, holder's PTTL, server time in us} when
-- busy.
local now = now_us()
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  -- Free, or handed to us by a release (claimed now with our own TTL).
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return won(KEYS[3], KEYS[4], KEYS[2], ARGV[1], now, ARGV[2], ARGV[3])
end

join(KEYS[3], KEYS[4], ARGV[1], now, ARGV[4],
  ARGV[5] .. ':' .. ARGV[3] .. ':0:' .. ARGV[6] .. ':' .. ARGV[7])
return {0, redis.call('PTTL', KEYS[1]), now}
