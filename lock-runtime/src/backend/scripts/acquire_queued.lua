-- One attempt of a waiter: take the lock if it is free or was handed to us by a release;
-- otherwise join the queue of waiters (or stay in it) and report the holder's PTTL.
-- KEYS[1] lock key, KEYS[2] fencing counter, KEYS[3] queue (list of tokens, arrival
-- order), KEYS[4] waiting (hash: token -> 'alive-until-ms:claim-ms:inbox')
-- ARGV[1] owner token, ARGV[2] TTL in ms, ARGV[3] '1' to INCR the fencing counter,
-- ARGV[4] how long this entry stays alive without another attempt (ms), ARGV[5] how long
-- a release may hand the lock to this waiter before it must claim it (ms), ARGV[6] the
-- channel the waiter hears hand-offs on
-- Returns {1, fencing token or 0} on success, {0, holder's PTTL} when busy.
local function won()
  redis.call('HDEL', KEYS[4], ARGV[1])
  if ARGV[3] == '1' then
    return {1, redis.call('INCR', KEYS[2])}
  end
  return {1, 0}
end

local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  -- Handed over by the last release: claim it with our own TTL.
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return won()
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return won()
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local alive = tonumber(ARGV[4])
if redis.call('HSET', KEYS[4], ARGV[1], (now + alive) .. ':' .. ARGV[5] .. ':' .. ARGV[6]) == 1 then
  redis.call('RPUSH', KEYS[3], ARGV[1])
end
for i = 3, 4 do
  if redis.call('PTTL', KEYS[i]) < alive then
    redis.call('PEXPIRE', KEYS[i], alive)
  end
end
return {0, redis.call('PTTL', KEYS[1])}
