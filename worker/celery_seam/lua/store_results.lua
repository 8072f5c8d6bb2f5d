-- A batch's results, each stored as Celery's Redis backend stores one, and the batch's
-- announcements, in one command: one reply to read where a pipeline had one a task.
-- KEYS: the result keys. ARGV: for each key its value and its expiry in seconds (0:
-- none), then a channel and a message for each announcement.
local n = #KEYS
for i = 1, n do
  local ttl = tonumber(ARGV[2 * i])
  if ttl > 0 then
    redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'EX', ttl)
  else
    redis.call('SET', KEYS[i], ARGV[2 * i - 1])
  end
end
for j = 2 * n + 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[j], ARGV[j + 1])
end
return n
