-- Where a new webhook starts in its campaign's feed: the feed's last entry id and the
-- events ever added to it (its record's `added`), read together so that the two agree.
-- KEYS: the feed, the feed's record (both the campaign's, one hash tag). Returns
-- {entry, added}, '0-0' and '0' for a feed not written yet.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
return {last and last[1] or '0-0', redis.call('HGET', KEYS[2], 'added') or '0'}
