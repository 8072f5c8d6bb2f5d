-- Deletes a webhook: its record, its log, its place in the campaign's and its key's
-- sets, its cursor, all or none (a record gone with its cursor left would stay in the
-- deliveries' registry; an id left in the campaign's set would count to its limit).
-- Deliveries still due find no webhook and are dropped by the dispatcher.
-- KEYS: webhook, log, campaign set, CURSORS, then the key's set if known (all {hooks}).
-- ARGV: the webhook id.
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if KEYS[5] then redis.call('SREM', KEYS[5], ARGV[1]) end
return 1
