-- The live workers' names, and the queue's length. KEYS: queue, workers. ARGV:
-- WORKER_SILENCE.
-- Runs after broker_live_workers.lua (shared/broker.py).
return {live, redis.call('LLEN', KEYS[1])}
