-- The queue of a lock's (or a semaphore's) waiters (see queue/mod.rs for the protocol):
--   queue:   sorted set, owner token -> arrival time (server clock, us): first come, first served
--   waiting: hash, owner token -> 'alive-until-us:claim-ms:fencing:permits:notify:channel',
--            where fencing is 1 or 0, permits is a semaphore waiter's count of permits (0
--            for a lock), notify is 'p' (PUBLISH) or 's' (SPUBLISH) and channel is where
--            the waiter hears a hand-off.
-- Work is bounded whatever the history: leaving is O(log n), and a release or an attempt
-- looks at most at SCAN entries.
local SCAN = 16

local function leave(queue, waiting, token)
  redis.call('ZREM', queue, token)
  redis.call('HDEL', waiting, token)
end

-- Removes dead entries from the head of the queue (at most SCAN).
local function prune(queue, waiting, now)
  for _ = 1, SCAN do
    local head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head then
      return
    end
    local entry = redis.call('HGET', waiting, head)
    local alive = entry and tonumber(string.match(entry, '^(%d+):'))
    if alive and alive > now then
      return
    end
    leave(queue, waiting, head)
  end
end

-- An entry's fields: alive-until (us), claim (ms), fencing, permits, notify, channel; nil
-- when malformed.
local function fields(entry)
  local alive, claim, fencing, permits, notify, channel =
    string.match(entry or '', '^(%d+):(%d+):([01]):(%d+):([ps]):(.+)$')
  if alive then
    return tonumber(alive), claim, fencing, tonumber(permits), notify, channel
  end
  return nil
end

-- The first live waiter's token and entry fields, left in the queue (dead entries before
-- it, at most SCAN, are removed: it looks at SCAN + 1 entries, as prune and a look at the
-- head do, and as the memory backend does); nil when there is none among them.
local function first_waiter(queue, waiting, now)
  for _ = 0, SCAN do
    local head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head then
      return nil
    end
    local alive, claim, fencing, permits, notify, channel =
      fields(redis.call('HGET', waiting, head))
    if alive and alive > now then
      return head, claim, fencing, permits, notify, channel
    end
    leave(queue, waiting, head)
  end
  return nil
end

-- A semaphore's: the first live waiter within SCAN entries whose count of permits admits
-- one more holder than the `live` ones, left in the queue (dead entries met are removed);
-- nil when there is none.
local function first_admitted(queue, waiting, now, live)
  prune(queue, waiting, now)
  for _, token in ipairs(redis.call('ZRANGE', queue, 0, SCAN - 1)) do
    local alive, claim, fencing, permits, notify, channel =
      fields(redis.call('HGET', waiting, token))
    if not alive or alive <= now then
      leave(queue, waiting, token)
    elseif live < permits then
      return token, claim, fencing, notify, channel
    end
  end
  return nil
end

-- Adds `token` at the end of the queue, or refreshes its entry keeping its place; its
-- entry is alive for `alive_ms` from now. The queue outlives its longest-lived entry by
-- at most that entry's `alive_ms` (an expiry found too short is set to twice it, so most
-- attempts read the two expiries and write neither), then disappears.
local function join(queue, waiting, token, now, alive_ms, fields)
  local alive = tonumber(alive_ms)
  redis.call('HSET', waiting, token, string.format('%d', now + alive * 1000) .. ':' .. fields)
  redis.call('ZADD', queue, 'NX', now, token)
  prune(queue, waiting, now)
  -- Each key checked on its own: eviction may drop one of the two.
  if redis.call('PTTL', queue) < alive then
    redis.call('PEXPIRE', queue, 2 * alive)
  end
  if redis.call('PTTL', waiting) < alive then
    redis.call('PEXPIRE', waiting, 2 * alive)
  end
end

-- An attempt took the lock (or a permit): `token` leaves the queue; the reply, with the
-- next fencing token when `fencing` is '1' (issued for `ttl_ms`).
local function won(queue, waiting, fence, token, now, ttl_ms, fencing)
  leave(queue, waiting, token)
  if fencing == '1' then
    return {1, next_fence(fence, now, ttl_ms)}
  end
  return {1, 0}
end

-- Tells the waiter `head` that a release handed it the lock or a permit:
-- '<token> <fencing token or 0> <server time in us>' on its channel.
local function tell(head, fence, now, notify, channel)
  local message = head .. ' ' .. string.format('%d', fence) .. ' ' .. string.format('%d', now)
  redis.call(notify == 's' and 'SPUBLISH' or 'PUBLISH', channel, message)
end
