-- KEYS: a lease. ARGV: this dispatcher, lease ms. Renews it if it is this one's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
