-- A channel's epoch, head and the history after a seq, in one atomic read. A channel Redis does
-- not hold yet is created with the given epoch, as a first subscribe creates it in memory mode.
-- KEYS: meta, history. ARGV: epoch to use if new, ttl_ms, since (seq; 0 for all).
-- Returns: epoch, seq, members after `since` (oldest first).
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
local seq = redis.call('HGET', KEYS[1], 'seq')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {epoch, seq, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[3], '+inf')}
