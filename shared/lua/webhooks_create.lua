-- A webhook, its place in the campaign's set and in its key's, and its cursor, unless
-- the campaign has its fill or the key was revoked: one script, so that concurrent
-- creations cannot together pass the limit and none lands after its key's revoke made
-- the list of what to disable. The cursor (where the feed ended, FEED_END_SCRIPT) is
-- read before, in the campaign's slot (a script here may touch {hooks} keys only): a
-- change written between the two is delivered to the new webhook too (at least once,
-- never a change made after its creation missed).
-- KEYS: webhook, campaign set, CURSORS, the key's set (all {hooks}); ARGV: limit, id,
-- cursor, REVOKED, then the record's fields and values. Returns a Creation's value.
if redis.call('SISMEMBER', KEYS[4], ARGV[4]) == 1 then return -1 end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
return 1
