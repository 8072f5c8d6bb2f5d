-- Records one attempt's outcome. KEYS: DUE, PENDING. ARGV: the three prefixes, webhook
-- id, event id, outcome, ms until the next attempt, attempts made, log entry, disabled
-- at, log length, log key. A retry is scheduled only while the delivery is still there
-- (not dropped meanwhile) and its webhook still exists; a deleted webhook keeps no log.
-- A disabled webhook comes first in DUE, so that the next claim drops its deliveries.
-- Runs after prefixes.lua, place.lua and shared/lua/server_time.lua (worker/deliveries/scripts.py).
local hook, event, outcome = ARGV[4], ARGV[5], ARGV[6]
local set, delivery, record = due_prefix .. hook, delivery_prefix .. hook .. ':' .. event,
  hook_prefix .. hook
local exists = redis.call('EXISTS', record) == 1
if exists then
  redis.call('LPUSH', ARGV[12], ARGV[9])
  redis.call('LTRIM', ARGV[12], 0, tonumber(ARGV[11]) - 1)
end
if outcome == 'retry' and exists and redis.call('ZSCORE', set, event) then
  redis.call('ZADD', set, now_ms + tonumber(ARGV[7]), event)
  redis.call('HSET', delivery, 'attempts', ARGV[8])
else
  if redis.call('ZREM', set, event) == 1 then redis.call('DECR', KEYS[2]) end
  redis.call('DEL', delivery)
end
if outcome == 'disabled' and exists then
  redis.call('HSETNX', record, 'disabled_at', ARGV[10])
  if redis.call('EXISTS', set) == 1 then redis.call('ZADD', KEYS[1], 0, hook) end
else
  place(KEYS[1], set, hook)
end
return 1
