-- The common release first: the caller owns the lock and nobody is queued, so the key is
-- deleted. It comes before the functions of the queue protocol (prepended after it):
-- defining them costs more than this whole path. Otherwise the script goes on to
-- release.lua. KEYS and ARGV as there.
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
