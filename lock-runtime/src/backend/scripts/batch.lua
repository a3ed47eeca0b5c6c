
-- Many independent unfenced acquires and releases in one call, in order.
-- ARGV[1] '1' to publish frees (as in release); then per operation, three arguments:
--   'a', owner token, TTL in ms        with one key: the lock key (SET NX PX)
--   'r', owner token, release channel  with three keys: lock key, queue, waiting
-- Returns one integer per operation: 1 when acquired or released, else 0.
local results, k, a = {}, 1, 2
while a <= #ARGV do
  if ARGV[a] == 'a' then
    local set = redis.call('SET', KEYS[k], ARGV[a + 1], 'NX', 'PX', ARGV[a + 2])
    results[#results + 1] = set and 1 or 0
    k = k + 1
  else
    results[#results + 1] =
      release(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[a + 1], ARGV[a + 2], ARGV[1])
    k = k + 3
  end
  a = a + 3
end
return results
