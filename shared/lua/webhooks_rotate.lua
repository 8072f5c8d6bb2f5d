-- A new secret, the current one kept as the previous for ARGV[2] ms of the store's
-- clock (the dispatchers sign on it: worker.deliveries); nothing if the webhook was
-- deleted meanwhile (an HSET would leave a record with only secrets). Read and written
-- in one script, so two rotations at once each keep a real secret. KEYS: the webhook.
-- ARGV: the new secret, the overlap (ms). Returns until when (ms), or 0.
-- Runs after server_time.lua (shared/webhook_store.py).
local current = redis.call('HGET', KEYS[1], 'secret')
if not current then return 0 end
local previous_until = now_ms + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'previous_secret', current,
           'previous_until', previous_until)
return previous_until
