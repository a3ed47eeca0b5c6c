-- Release a lock if, and only if, the caller owns it: hand it to the first live waiter
-- in the queue (set the key to that waiter's token for its claim window, and publish
-- '<token> <release channel>' on the waiter's inbox), or delete it and publish '' on the
-- release channel. A waiter that gives up calls this too: it leaves the queue and
-- passes on a lock handed to it.
-- KEYS[1] lock key, KEYS[2] queue, KEYS[3] waiting (see acquire_queued.lua)
-- ARGV[1] owner token, ARGV[2] release channel
-- Returns 1 when released, 0 when the key is gone or another owner's.
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local now
while true do
  local head = redis.call('LPOP', KEYS[2])
  if not head then
    break
  end
  local entry = redis.call('HGET', KEYS[3], head)
  if entry then
    redis.call('HDEL', KEYS[3], head)
    if not now then
      local time = redis.call('TIME')
      now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    end
    local alive, claim, inbox = string.match(entry, '^(%d+):(%d+):(.+)$')
    if alive and tonumber(alive) > now then
      redis.call('SET', KEYS[1], head, 'PX', claim)
      redis.call('PUBLISH', inbox, head .. ' ' .. ARGV[2])
      return 1
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], '')
return 1
