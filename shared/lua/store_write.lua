-- Applies one campaign's changes (shared.events): KEYS the campaign's marks (hash),
-- feed (stream) and feed record (hash: trimmed, added), which share the campaign's hash
-- tag (shared.keyspace), so that on a Cluster this runs on one node; ARGV retention
-- ms, trim budget, then per request: code, key id, request id, stored reason, deadline
-- (ms, 0: none), count, numbers. Returns 1 per number it changed, 0 per other, -1 per
-- number of a request past its deadline by the store's clock: not applied, so that a
-- change its request gave up on (and answered as a failure) is never made later, by a
-- worker that was stopped with it in hand or whose write waited behind a stalled store.
--
-- The deliveries follow the feed itself (worker/deliveries): a change costs them no
-- write of its own but the count of events added to the feed (one HINCRBY per feed
-- entry), by which a dispatcher sees which feeds grew and the gauge what is pending.
-- Runs after server_time.lua (shared/mark_writes.py).
local marks, stream, record = KEYS[1], KEYS[2], KEYS[3]
local flags = {}
local i = 3
while i <= #ARGV do
  local code, kid, rid, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local deadline = tonumber(ARGV[i + 4])
  local n = tonumber(ARGV[i + 5])
  local first = i + 6
  if deadline > 0 and now_ms > deadline then
    for j = 1, n do flags[#flags + 1] = -1 end
  else
    local olds = redis.call('HMGET', marks, unpack(ARGV, first, first + n - 1))
    local changed = {}
    for j = 1, n do
      local old = olds[j]
      local ended = old ~= false and string.sub(old, 1, 1) ~= 'r'
      if ended ~= (code == 'e') then
        changed[#changed + 1] = j
        flags[#flags + 1] = 1
      else
        flags[#flags + 1] = 0
      end
    end
    if #changed > 0 then
      local phones = {}
      for x, j in ipairs(changed) do phones[x] = ARGV[first + j - 1] end
      local id = redis.call('XADD', stream, '*', 't', code, 'k', kid, 'q', rid, 'r', reason,
        'n', table.concat(phones, ','))
      redis.call('HINCRBY', record, 'added', #phones)
      local tail = ' ' .. kid .. ' ' .. rid .. ' ' .. reason
      local writes = {}
      for x, j in ipairs(changed) do
        local line = code .. id .. '-' .. (x - 1) .. tail
        local old = olds[j]
        writes[#writes + 1] = phones[x]
        writes[#writes + 1] = old and (line .. '\n' .. old) or line
      end
      redis.call('HSET', marks, unpack(writes))
    end
  end
  i = first + n
end
-- Past the retention, entries leave the feed, oldest first. A number whose resume
-- leaves the feed, unchanged since, leaves the hash with its history.
local cutoff = now_ms - tonumber(ARGV[1])
if cutoff > 0 then
  local old = redis.call('XRANGE', stream, '-', '(' .. cutoff .. '-0', 'COUNT', ARGV[2])
  local last = nil
  for _, entry in ipairs(old) do
    local id, f = entry[1], entry[2]
    local t, numbers = nil, ''
    for x = 1, #f, 2 do
      if f[x] == 't' then t = f[x + 1] elseif f[x] == 'n' then numbers = f[x + 1] end
    end
    local index = 0
    for phone in string.gmatch(numbers, '[^,]+') do
      if t == 'r' then
        local prefix = 'r' .. id .. '-' .. index .. ' '
        local v = redis.call('HGET', marks, phone)
        if v and string.sub(v, 1, #prefix) == prefix then redis.call('HDEL', marks, phone) end
      end
      index = index + 1
    end
    redis.call('XDEL', stream, id)
    last = id .. '-' .. math.max(index - 1, 0)
  end
  if last then redis.call('HSET', record, 'trimmed', last) end
end
return flags
