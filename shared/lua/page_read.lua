-- A listing's read, at one instant: HSCAN of the campaign's marks from cursor ARGV[1]
-- (COUNT ARGV[2]) and how many marks it holds. KEYS: the campaign's marks.
local scan = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
return {scan[1], scan[2], redis.call('HLEN', KEYS[1])}
