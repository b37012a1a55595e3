-- Publishes one event to one or more channels, atomically.
-- KEYS: per channel i, three keys: meta (hash epoch/seq), history (zset by seq), idempotency key.
-- ARGV: ts, body, idempotent ('1'/'0'), max_events, max_age_ms, ttl_ms, id_window_ms, then per
--       channel i: an epoch to use if the channel is new, and its events pub/sub channel.
-- Returns per channel i: {epoch, seq, duplicate (1/0)}.
local ts, body, idem = ARGV[1], ARGV[2], ARGV[3] == '1'
local max_events, max_age = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl, id_window = ARGV[6], ARGV[7]
local out = {}
for i = 1, #KEYS / 3 do
  local meta, hist, idk = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = ARGV[6 + 2 * i]
    redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
  end
  local dup = nil
  if idem then
    local prev = redis.call('GET', idk)
    if prev then
      local e, s = string.match(prev, '^(%S+) (%d+)$')
      if e == epoch then dup = s end
    end
  end
  if dup then
    out[i] = {epoch, dup, 1}
  else
    local seq = redis.call('HINCRBY', meta, 'seq', 1)
    local member = seq .. ' ' .. ts .. ' ' .. body
    redis.call('ZADD', hist, seq, member)
    local n = redis.call('ZCARD', hist)
    if n > max_events then
      redis.call('ZREMRANGEBYRANK', hist, 0, n - max_events - 1)
    end
    -- Age cap: drop aged events from the old end, a bounded number per publish.
    local cutoff = tonumber(ts) - max_age
    for _ = 1, 32 do
      local oldest = redis.call('ZRANGE', hist, 0, 0)
      if #oldest == 0 then break end
      local t = tonumber(string.match(oldest[1], '^%d+ (%d+) '))
      if t and t < cutoff then
        redis.call('ZREMRANGEBYRANK', hist, 0, 0)
      else
        break
      end
    end
    if idem then
      redis.call('SET', idk, epoch .. ' ' .. seq, 'PX', id_window)
    end
    redis.call('PEXPIRE', meta, ttl)
    redis.call('PEXPIRE', hist, ttl)
    redis.call('PUBLISH', ARGV[7 + 2 * i], epoch .. ' ' .. member)
    out[i] = {epoch, seq, 0}
  end
end
return out
