-- A webhook, its place in the campaign's set and in its key's, and its cursor at the
-- feed's end (it gets the changes made after it), unless the campaign has its fill or
-- the key was revoked: one script, so that concurrent creations cannot together pass
-- the limit, none lands after its key's revoke made the list of what to disable, and
-- no change falls between the cursor and the first the write script counts for it.
-- KEYS: webhook, campaign set, CURSORS, the feed, the feed's record, the key's set (the campaign
-- set, the feed and the key's set are named after the campaign, to share its hash tag
-- in a Cluster; the others are not, as before); ARGV: limit, id, feed name, REVOKED,
-- then the record's fields and values. Returns a Creation's value.
if redis.call('SISMEMBER', KEYS[6], ARGV[4]) == 1 then return -1 end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[6], ARGV[2])
local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)[1]
local entry = last and last[1] or '0-0'
local passed = redis.call('HGET', KEYS[5], 'added') or '0'
redis.call('HSET', KEYS[3], ARGV[2], entry .. ' ' .. passed .. ' ' .. ARGV[3])
return 1
