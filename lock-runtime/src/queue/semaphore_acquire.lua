
-- One attempt at a permit of a semaphore: take one if fewer than our count of permits
-- are held or one was handed to us; a queued attempt otherwise joins the queue (or stays
-- in it).
-- KEYS[1] holders, KEYS[2] fencing token, KEYS[3] queue, KEYS[4] waiting
-- ARGV[1] owner token, ARGV[2] TTL in ms, ARGV[3] '1' for a fencing token, ARGV[4] the
-- permits, and for a queued attempt: ARGV[5] how long this entry stays alive without
-- another attempt (ms), ARGV[6] how long a permit handed to us waits to be claimed (ms),
-- ARGV[7] 'p' or 's' (PUBLISH or SPUBLISH), ARGV[8] the channel we hear hand-offs on
-- Returns {1, fencing token or 0} on success, {0, ms until the first lease ends, server
-- time in us} when every permit is taken.
local now = now_us()
local live = live_holders(KEYS[1], now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or live < tonumber(ARGV[4]) then
  -- A free permit, or one handed to us by a release (claimed now with our own TTL).
  set_lease(KEYS[1], ARGV[1], lease_end(now, ARGV[2]), now)
  return won(KEYS[3], KEYS[4], KEYS[2], ARGV[1], now, ARGV[2], ARGV[3])
end
if ARGV[5] then
  join(KEYS[3], KEYS[4], ARGV[1], now, ARGV[5],
    ARGV[6] .. ':' .. ARGV[3] .. ':' .. ARGV[4] .. ':' .. ARGV[7] .. ':' .. ARGV[8])
end
return {0, first_lease_left(KEYS[1], now), now}
