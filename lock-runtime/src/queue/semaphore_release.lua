
-- Release a permit if, and only if, the caller holds one: hand it to the first live
-- waiter (within SCAN entries) whose count of permits admits it (its lease then lasts its
-- claim window, with its fencing token, and it is told on its channel). A waiter that gives up
-- calls this too: it leaves the queue, and passes on a permit handed to it meanwhile.
-- KEYS[1] holders, KEYS[2] fencing token, KEYS[3] queue, KEYS[4] waiting
-- ARGV[1] owner token
-- Returns 1 when released, 0 when the caller's lease had ended or it had none.
local now = now_us()
leave(KEYS[3], KEYS[4], ARGV[1])
local held = lease_of(KEYS[1], ARGV[1], now)
redis.call('ZREM', KEYS[1], ARGV[1])
if not held then
  return 0
end
local live = live_holders(KEYS[1], now)
local head, claim, fencing, notify, channel = first_admitted(KEYS[3], KEYS[4], now, live)
if head then
  leave(KEYS[3], KEYS[4], head)
  -- pcall: out of memory, the permit is freed instead of handed over (the waiter's next
  -- attempt takes it), so a release never fails.
  local handed = pcall(set_lease, KEYS[1], head, lease_end(now, claim), now)
  local fence = 0
  if handed and fencing == '1' then
    handed, fence = pcall(next_fence, KEYS[2], now, claim)
  end
  if handed then
    tell(head, fence, now, notify, channel)
  else
    redis.call('ZREM', KEYS[1], head)
  end
end
return 1
