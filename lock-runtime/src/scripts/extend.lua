-- Change a lock's expiry if, and only if, the caller owns it.
-- KEYS[1] lock key
-- ARGV[1] owner token, ARGV[2] milliseconds, ARGV[3] the mode:
--   'renew': expire in ARGV[2] ms unless it already expires later (never shortens);
--   'add':   add ARGV[2] ms to the remaining time;
--   'set':   expire in exactly ARGV[2] ms (min_hold: may shorten, never deletes).
-- Returns the new PTTL in ms, or 0 when the key is gone or another owner's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ms = tonumber(ARGV[2])
local left = redis.call('PTTL', KEYS[1])
if ARGV[3] == 'add' and left > 0 then
  ms = ms + left
elseif ARGV[3] == 'renew' and left > ms then
  return left
end
redis.call('PEXPIRE', KEYS[1], ms)
return ms
