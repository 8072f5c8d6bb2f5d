-- Push the request's tasks unless the queue cannot drain them within the budget.
-- KEYS: queue, workers, drain. ARGV: WORKER_SILENCE, budget (s), tasks, messages...
-- (none: only say whether there is room for that many tasks).
-- Returns {admitted (1 or 0), depth before, drain rate of the live workers ("" if
-- none)}. The rate of live workers that have not measured one yet is taken as their
-- peers' mean; with no live worker, or none measured, nothing is refused (the tasks
-- wait for the deadline and fail, as without this check). A request that finds the
-- queue empty is always taken.
-- Runs after broker_live_workers.lua (shared/broker.py).
local depth = redis.call('LLEN', KEYS[1])
local rate, known = 0, 0
if #live > 0 then
  for _, r in ipairs(redis.call('HMGET', KEYS[3], unpack(live))) do
    if r then
      rate = rate + tonumber(r)
      known = known + 1
    end
  end
end
if known > 0 then
  rate = rate / known * #live
  if depth > 0 and depth + tonumber(ARGV[3]) > rate * tonumber(ARGV[2]) then
    return {0, depth, tostring(rate)}
  end
end
if #ARGV > 3 then
  redis.call('LPUSH', KEYS[1], unpack(ARGV, 4))
end
if known > 0 then
  return {1, depth, tostring(rate)}
end
return {1, depth, ''}
