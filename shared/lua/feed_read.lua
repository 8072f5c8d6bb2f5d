-- A feed page's first read, at one instant: the id of the last event trimmed, the
-- entries from ARGV[1] ('-': the oldest), at most ARGV[2], and the clock that stamps
-- new entries. KEYS: the campaign's feed record and feed (one hash tag: one node).
local trimmed = redis.call('HGET', KEYS[1], 'trimmed')
local entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
return {trimmed, entries, redis.call('TIME')}
