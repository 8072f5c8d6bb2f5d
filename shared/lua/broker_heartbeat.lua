-- Say a worker is alive, with its drain rate once measured, and forget the workers
-- silent for WORKER_FORGOTTEN. KEYS: workers, drain. ARGV: the worker, WORKER_FORGOTTEN,
-- its rate ('' for none). Returns the broker's TIME.
-- Runs after server_time.lua (shared/broker.py).
local now = now_ms / 1000
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
return server_time
