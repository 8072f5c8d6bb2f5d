-- A webhook's place in DUE: the earliest score of its own set, or none when it is empty.
local function place(due, set, hook)
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if first[1] then redis.call('ZADD', due, first[2], hook) else redis.call('ZREM', due, hook) end
end
