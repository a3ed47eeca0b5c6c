-- The common release first: the caller owns the lock and nobody is queued, so the key is
-- deleted. It comes before the functions of the queue protocol (prepended after it):
-- defining them costs more than this whole path. Otherwise the script goes on to
-- release.lua with `holder`, the key's value. KEYS and ARGV as there. (PTTL -2: no
-- queue. PTTL costs less than ZRANGE, and keeps the commands a locker's ACL needs as the
-- docs list them.)
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] and redis.call('PTTL', KEYS[3]) == -2 then
  redis.call('DEL', KEYS[1])
  return 1
end
