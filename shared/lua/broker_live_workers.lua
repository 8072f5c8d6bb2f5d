-- `live`, the workers that beat within the last ARGV[1] seconds (WORKER_SILENCE) of
-- the broker's clock. KEYS[2]: the workers' sorted set.
-- Runs after server_time.lua (shared/broker.py).
local live = redis.call('ZRANGEBYSCORE', KEYS[2], now_ms / 1000 - tonumber(ARGV[1]), '+inf')
