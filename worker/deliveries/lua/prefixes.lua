-- Key names the scripts build (shared.deliveries, shared.webhooks): prefixes in ARGV.
local due_prefix, delivery_prefix, hook_prefix = ARGV[1], ARGV[2], ARGV[3]
