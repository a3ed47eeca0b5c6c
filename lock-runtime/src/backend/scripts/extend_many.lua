-- Renew many locks at once: for each i, set KEYS[i] to expire in ARGV[2i] ms if, and
-- only if, its owner token is ARGV[2i-1].
-- Returns one entry per key: the new PTTL in ms, or 0 when the key is gone or another owner's.
local renewed = {}
for i, key in ipairs(KEYS) do
  local ms = ARGV[2 * i]
  if redis.call('GET', key) == ARGV[2 * i - 1] then
    redis.call('PEXPIRE', key, ms)
    renewed[i] = tonumber(ms)
  else
    renewed[i] = 0
  end
end
return renewed
