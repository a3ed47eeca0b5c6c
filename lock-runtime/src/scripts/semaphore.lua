-- A semaphore's holders (see queue/mod.rs): a sorted set, owner token -> the end of its
-- lease in ms on the server's clock. A lease is live while its end is after now; the set
-- expires with its longest lease, so a semaphore nobody holds leaves nothing behind.

-- Now in whole ms, rounded down: a lease ending at or before it is over.
local function floor_ms(now)
  return math.floor(now / 1000)
end

-- Drops ended leases; the count of live ones.
local function live_holders(holders, now)
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', floor_ms(now))
  return redis.call('ZCARD', holders)
end

-- The time left of a lease ending at `ends` (ms), in whole ms rounded down.
local function left_ms(ends, now)
  return math.floor((ends * 1000 - now) / 1000)
end

-- Sets `token`'s lease to end at `ends` (ms) and keeps the set alive at least as long.
local function set_lease(holders, token, ends, now)
  redis.call('ZADD', holders, string.format('%d', ends), token)
  local keep = ends - floor_ms(now)
  if redis.call('PTTL', holders) < keep then
    redis.call('PEXPIRE', holders, keep)
  end
end

-- The end of a lease of `ms` from now: now rounded up, so it never ends early.
local function lease_end(now, ms)
  return math.ceil(now / 1000) + tonumber(ms)
end

-- `token`'s live lease end, or nil. A holders key of another type counts as none.
local function lease_of(holders, token, now)
  local score = redis.pcall('ZSCORE', holders, token)
  local ends = type(score) == 'string' and tonumber(score)
  if ends and ends > floor_ms(now) then
    return ends
  end
  return nil
end

-- Renews `token`'s lease to `ms` from now unless it ends later (never shortens); the time
-- left after it, or 0 when `token` holds no live lease.
local function renew_lease(holders, token, ms, now)
  local ends = lease_of(holders, token, now)
  if not ends then
    return 0
  end
  local wanted = lease_end(now, ms)
  if ends < wanted then
    set_lease(holders, token, wanted, now)
    ends = wanted
  end
  return left_ms(ends, now)
end

-- Ms until the first live lease ends (-2 when there is none).
local function first_lease_left(holders, now)
  local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
  if not first[2] then
    return -2
  end
  return left_ms(tonumber(first[2]), now)
end
