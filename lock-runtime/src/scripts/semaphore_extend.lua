
-- Change the lease of a semaphore permit if, and only if, the caller holds it.
-- KEYS[1] holders
-- ARGV[1] owner token, ARGV[2] milliseconds, ARGV[3] the mode:
--   'renew': end in ARGV[2] ms unless it already ends later (never shortens);
--   'add':   add ARGV[2] ms to the time left;
--   'set':   end in exactly ARGV[2] ms (min_hold: may shorten, at least 1 ms).
-- Returns the time left in ms, or 0 when the caller holds no live lease.
local now = now_us()
if ARGV[3] == 'renew' then
  return renew_lease(KEYS[1], ARGV[1], ARGV[2], now)
end
local ends = lease_of(KEYS[1], ARGV[1], now)
if not ends then
  return 0
end
if ARGV[3] == 'add' then
  ends = ends + tonumber(ARGV[2])
else
  ends = lease_end(now, math.max(tonumber(ARGV[2]), 1))
end
set_lease(KEYS[1], ARGV[1], ends, now)
return left_ms(ends, now)
