
-- Release a lock if, and only if, the caller owns it: hand it to the first live waiter
-- (the key becomes the waiter's for its claim window, with its fencing token, and the
-- waiter is told on its channel), or delete it. A waiter that gives up calls this too: it
-- leaves the queue, and passes on a lock handed to it meanwhile.
-- KEYS[1] lock key, KEYS[2] fencing token, KEYS[3] queue, KEYS[4] waiting
-- ARGV[1] owner token
-- Returns 1 when released, 0 when the key is gone or another owner's.
-- `holder` comes from release_fast.lua, which runs first.
if holder ~= ARGV[1] then
  leave(KEYS[3], KEYS[4], ARGV[1])
  return 0
end
local now = now_us()
local head, claim, fencing, _, notify, channel = first_waiter(KEYS[3], KEYS[4], now)
if head then
  leave(KEYS[3], KEYS[4], head)
  -- pcall: out of memory, the lock is freed instead of handed over (the waiter's next
  -- attempt takes it), so a release never fails.
  local fence = 0
  local handed = redis.pcall('SET', KEYS[1], head, 'PX', claim)
  if type(handed) == 'table' and handed.ok and fencing == '1' then
    local issued, token = pcall(next_fence, KEYS[2], now, claim)
    if issued then
      fence = token
    else
      handed = false
    end
  end
  if type(handed) == 'table' and handed.ok then
    tell(head, fence, now, notify, channel)
    return 1
  end
end
redis.call('DEL', KEYS[1])
return 1
