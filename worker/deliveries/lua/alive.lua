-- Says this dispatcher is alive, forgets those silent for a lease. KEYS: DISPATCHERS.
-- ARGV: this dispatcher, lease ms. Returns how many are alive, and the store's TIME.
-- Runs after shared/lua/server_time.lua (worker/deliveries/scripts.py).
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[2]))
return {redis.call('ZCARD', KEYS[1]), server_time}
