-- Shared by the scripts that need the server's clock or fencing tokens (prepended).

-- The server's clock in microseconds (exact in a Lua number until the year 2255).
local function now_us()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- The next fencing token of a lock: larger than the last one issued (kept in `fence` for
-- `keep_ms`) and than the server's clock in microseconds. So tokens keep growing when
-- `fence` expired or was lost (restart without persistence, eviction, failover to a
-- replica), as long as the server's clock does not step back past the last token.
local function next_fence(fence, now, keep_ms)
  local last = tonumber(redis.call('GET', fence)) or 0
  local token = math.max(last + 1, now)
  redis.call('SET', fence, string.format('%d', token), 'PX', keep_ms)
  return token
end
