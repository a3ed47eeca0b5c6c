
-- Look at a semaphore without changing it.
-- KEYS[1] holders
-- ARGV[1] an owner token
-- Returns {the time left of that owner's lease in ms (-2: none), ms until the first live
-- lease ends (-2: none held)}.
local now = now_us()
local ends = lease_of(KEYS[1], ARGV[1], now)
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. floor_ms(now), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {ends and left_ms(ends, now) or -2, first[2] and left_ms(tonumber(first[2]), now) or -2}
