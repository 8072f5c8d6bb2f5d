-- Adds one process's counts to everyone's, all or none. KEYS: the metrics hash; ARGV:
-- sample, amount, sample, amount...
for i = 1, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
