-- Claims due retries, a webhook at a time, on the store's clock. KEYS: DUE, PENDING.
-- ARGV: the three prefixes, lease ms, most to claim, most webhooks to look at,
-- per-webhook cap, drop chunk, per-campaign cap, how many webhooks follow, then per
-- webhook with attempts in flight here: its id, how many; then per campaign with
-- attempts in flight here: its company, campaign, how many. A claimed delivery's score
-- becomes the end of its lease. A deleted or disabled webhook's deliveries are dropped,
-- not sent. Returns the claimed deliveries (webhook id, event id, attempts so far, body)
-- flat, the records of their webhooks (id, HGETALL reply) flat, and how many deliveries
-- were dropped.
-- Runs after prefixes.lua, place.lua and shared/lua/server_time.lua (worker/deliveries/scripts.py).
local now, lease, want = now_ms, tonumber(ARGV[4]), tonumber(ARGV[5])
local scan, cap, chunk = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local campaign_cap, hooks = tonumber(ARGV[9]), tonumber(ARGV[10])
local busy, campaigns = {}, {}
for i = 11, 10 + 2 * hooks, 2 do busy[ARGV[i]] = tonumber(ARGV[i + 1]) end
local function campaign_of(company)
  campaigns[company] = campaigns[company] or {}
  return campaigns[company]
end
for i = 11 + 2 * hooks, #ARGV, 3 do campaign_of(ARGV[i])[ARGV[i + 1]] = tonumber(ARGV[i + 2]) end
local claimed, records, dropped, taken = {}, {}, 0, 0
for _, hook in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, scan)) do
  if taken >= want then break end
  local set = due_prefix .. hook
  local record = redis.call('HGETALL', hook_prefix .. hook)
  local live, company, campaign = #record > 0, '', ''
  for x = 1, #record, 2 do
    if record[x] == 'disabled_at' then live = false end
    if record[x] == 'company' then company = record[x + 1] end
    if record[x] == 'campaign' then campaign = record[x + 1] end
  end
  local of_company = campaign_of(company)
  local free = math.min(cap - (busy[hook] or 0), campaign_cap - (of_company[campaign] or 0))
  if not live then
    local events = redis.call('ZRANGE', set, 0, chunk - 1)
    for _, event in ipairs(events) do redis.call('DEL', delivery_prefix .. hook .. ':' .. event) end
    if #events > 0 then
      redis.call('ZREM', set, unpack(events))
      redis.call('DECRBY', KEYS[2], #events)
      dropped = dropped + #events
    end
    place(KEYS[1], set, hook)
  elseif free > 0 then
    local got = 0
    local count = math.min(free, want - taken)
    for _, event in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, count)) do
      local d = redis.call('HMGET', delivery_prefix .. hook .. ':' .. event, 'attempts', 'body')
      if d[2] then
        redis.call('ZADD', set, now + lease, event)
        claimed[#claimed + 1] = hook
        claimed[#claimed + 1] = event
        claimed[#claimed + 1] = d[1] or '0'
        claimed[#claimed + 1] = d[2]
        got = got + 1
      else
        redis.call('ZREM', set, event)
        redis.call('DECR', KEYS[2])
        dropped = dropped + 1
      end
    end
    place(KEYS[1], set, hook)
    if got > 0 then
      records[#records + 1] = hook
      records[#records + 1] = record
      taken = taken + got
      of_company[campaign] = (of_company[campaign] or 0) + got
    end
  end
end
return {claimed, records, dropped}
