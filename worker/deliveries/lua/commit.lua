-- What a followed webhook's finished first attempts leave, in one script. KEYS: DUE,
-- PENDING, CURSORS, the webhook, its log, its due set, its lease. ARGV: the three
-- prefixes, webhook id, this dispatcher, the new cursor (or ''), disabled at (or ''),
-- log length, number of log entries, the entries (oldest first), then per retry: event
-- id, ms until it is due (counted from this commit, at most COMMIT_EVERY after the
-- attempt failed), body. The log and the retries are written while the webhook
-- exists; the cursor only while this dispatcher holds the lease (else the one that
-- took it over sends from the old cursor: duplicates, never a loss). A disabled
-- webhook leaves the registry and comes first in DUE, so the next claim drops its
-- retries. Returns 1, or 0 when the webhook is gone or the lease lost.
-- Runs after prefixes.lua, place.lua and shared/lua/server_time.lua (worker/deliveries/scripts.py).
local hook, me, cursor, disabled = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
local logged = tonumber(ARGV[9])
if logged > 0 then
  redis.call('LPUSH', KEYS[5], unpack(ARGV, 10, 9 + logged))
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[8]) - 1)
end
local added = 0
for i = 10 + logged, #ARGV, 3 do
  if redis.call('ZADD', KEYS[6], 'NX', now_ms + tonumber(ARGV[i + 1]), ARGV[i]) == 1 then
    local delivery = delivery_prefix .. hook .. ':' .. ARGV[i]
    redis.call('HSET', delivery, 'attempts', 1, 'body', ARGV[i + 2])
    added = added + 1
  end
end
if added > 0 then
  redis.call('INCRBY', KEYS[2], added)
  place(KEYS[1], KEYS[6], hook)
end
if disabled ~= '' then
  redis.call('HSETNX', KEYS[4], 'disabled_at', disabled)
  redis.call('HDEL', KEYS[3], hook)
  if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('ZADD', KEYS[1], 0, hook) end
  return 1
end
if redis.call('GET', KEYS[7]) ~= me then return 0 end
if cursor ~= '' and redis.call('HEXISTS', KEYS[3], hook) == 1 then
  redis.call('HSET', KEYS[3], hook, cursor)
end
return 1
