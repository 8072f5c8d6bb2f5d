-- Disables webhooks as a receiver's 410 does (worker/deliveries/lua/commit.lua):
-- `disabled_at` set, out of the deliveries' registry (CURSORS; the dispatcher that
-- follows one lets go at its next look, within a second), and first in DUE when it
-- has retries, so that the next claim drops them rather than sends them. KEYS:
-- CURSORS, DUE, then per webhook its record and its due set (none named after the
-- campaign, as for the deliveries' scripts); ARGV: when, then the webhook ids.
-- Returns the ids it disabled (not those deleted or disabled before).
local disabled = {}
for i = 2, #ARGV do
  local hook, record, due = ARGV[i], KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('EXISTS', record) == 1
      and redis.call('HSETNX', record, 'disabled_at', ARGV[1]) == 1 then
    redis.call('HDEL', KEYS[1], hook)
    if redis.call('EXISTS', due) == 1 then redis.call('ZADD', KEYS[2], 0, hook) end
    disabled[#disabled + 1] = hook
  end
end
return disabled
