
-- The queue of a lock's waiters (see queue/mod.rs for the protocol):
--   queue:   sorted set, owner token -> arrival time (server clock, us): first come, first served
--   waiting: hash, owner token -> 'alive-until-us:claim-ms:fencing:notify:channel', where
--            fencing is 1 or 0, notify is 'p' (PUBLISH) or 's' (SPUBLISH) and channel is
--            where the waiter hears a hand-off.
-- Work is bounded whatever the history: leaving is O(log n), and a release or an attempt
-- looks at most at SCAN entries.
local SCAN = 16

local function leave(queue, waiting, token)
  redis.call('ZREM', queue, token)
  redis.call('HDEL', waiting, token)
end

-- The first live waiter's token and entry fields, taking it (and dead entries before it,
-- at most SCAN in all) out of the queue; nil when there is none within SCAN.
local function next_waiter(queue, waiting, now)
  for _ = 1, SCAN do
    local head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head then
      return nil
    end
    local entry = redis.call('HGET', waiting, head)
    leave(queue, waiting, head)
    if entry then
      local alive, claim, fencing, notify, channel =
        string.match(entry, '^(%d+):(%d+):([01]):([ps]):(.+)$')
      if alive and tonumber(alive) > now then
        return head, claim, fencing, notify, channel
      end
    end
  end
  return nil
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
