-- release(key, queue, waiting, token, channel, publish_frees): release the lock `key` if,
-- and only if, `token` owns it. Hand it to the first live waiter in `queue` (set the key
-- to that waiter's token for its claim window, and publish '<token> <channel>' on the
-- waiter's inbox), or delete it (and, when `publish_frees` is '1', publish '' on
-- `channel` for waiters that do not queue). A waiter that gives up calls this too: it
-- leaves the queue and passes on a lock handed to it. Returns 1 when released, 0 when
-- the key is gone or another owner's. (Queue layout: see acquire_queued.lua.)
local function release(key, queue, waiting, token, channel, publish_frees)
  if redis.call('GET', key) ~= token then
    redis.call('HDEL', waiting, token)
    return 0
  end
  local now
  while true do
    local head = redis.call('LPOP', queue)
    if not head then
      break
    end
    local entry = redis.call('HGET', waiting, head)
    if entry then
      redis.call('HDEL', waiting, head)
      if not now then
        local time = redis.call('TIME')
        now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
      end
      local alive, claim, inbox = string.match(entry, '^(%d+):(%d+):(.+)$')
      if alive and tonumber(alive) > now then
        redis.call('SET', key, head, 'PX', claim)
        redis.call('PUBLISH', inbox, head .. ' ' .. channel)
        return 1
      end
    end
  end
  redis.call('DEL', key)
  if publish_frees == '1' then
    redis.call('PUBLISH', channel, '')
  end
  return 1
end
