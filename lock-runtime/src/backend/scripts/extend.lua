-- Change a lock's expiry if, and only if, the caller owns it.
-- KEYS[1] lock key
-- ARGV[1] owner token, ARGV[2] milliseconds, ARGV[3] 'set' (expire in ARGV[2] ms)
-- or 'add' (add ARGV[2] ms to the remaining time)
-- Returns the new PTTL in ms, or 0 when the key is gone or another owner's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local ms = tonumber(ARGV[2])
  if ARGV[3] == 'add' then
    local left = redis.call('PTTL', KEYS[1])
    if left > 0 then
      ms = ms + left
    end
  end
  redis.call('PEXPIRE', KEYS[1], ms)
  return ms
end
return 0
