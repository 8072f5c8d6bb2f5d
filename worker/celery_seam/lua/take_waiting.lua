-- What else waits on the queue, oldest first: all of it, or half of a long queue
-- (from ARGV[2] messages on) so that another worker takes the rest meanwhile; at most
-- ARGV[1]. KEYS: the queue. ARGV: most to take, length from which it is shared.
-- RPOP with a count needs Redis 6.2 or later (worker/celery_seam/transport.py).
local waiting = redis.call('LLEN', KEYS[1])
if waiting == 0 then return {} end
local take = waiting
if waiting >= tonumber(ARGV[2]) then take = math.ceil(waiting / 2) end
return redis.call('RPOP', KEYS[1], math.min(take, tonumber(ARGV[1])))
