-- Renew many locks at once: for each i, make KEYS[i] expire in ARGV[2i] ms, unless it
-- already expires later, if, and only if, its owner token is ARGV[2i-1]. A key that is
-- not a string (someone overwrote it with another type) counts as not the owner's, for
-- that key only.
-- Returns one entry per key: the new PTTL in ms, or 0 when the key is gone or another
-- owner's. (On Redis Cluster every call holds keys of one slot.)
local renewed = {}
for i, key in ipairs(KEYS) do
  renewed[i] = 0
  local owner = redis.pcall('GET', key)
  if type(owner) == 'string' and owner == ARGV[2 * i - 1] then
    local ms = tonumber(ARGV[2 * i])
    local left = redis.call('PTTL', key)
    if left > ms then
      renewed[i] = left
    else
      redis.call('PEXPIRE', key, ms)
      renewed[i] = ms
    end
  end
end
return renewed
