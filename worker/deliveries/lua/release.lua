-- KEYS: a lease. ARGV: this dispatcher. Lets it go if it is this one's.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
