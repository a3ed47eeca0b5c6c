
-- Renew many locks and semaphore permits at once: for each i, make KEYS[i] (a lock when
-- ARGV[3i] is 'l', a semaphore's holders when it is 's') expire for owner ARGV[3i-2] in
-- ARGV[3i-1] ms, unless it already expires later, if, and only if, that owner holds it.
-- A key of another type than expected (someone overwrote it) counts as not the owner's,
-- for that key only.
-- Returns one entry per key: the time left in ms, or 0 when the key is gone or another
-- owner's. (On Redis Cluster every call holds keys of one slot.)
local renewed = {}
local now
for i, key in ipairs(KEYS) do
  renewed[i] = 0
  local token, ms = ARGV[3 * i - 2], tonumber(ARGV[3 * i - 1])
  if ARGV[3 * i] == 's' then
    now = now or now_us()
    renewed[i] = renew_lease(key, token, ms, now)
  else
    local owner = redis.pcall('GET', key)
    if type(owner) == 'string' and owner == token then
      local left = redis.call('PTTL', key)
      if left > ms then
        renewed[i] = left
      else
        redis.call('PEXPIRE', key, ms)
        renewed[i] = ms
      end
    end
  end
end
return renewed
