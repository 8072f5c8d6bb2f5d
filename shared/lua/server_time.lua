-- At the top of a script: the server's time, as TIME gives it (seconds and
-- microseconds, strings) and in ms since the epoch.
local server_time = redis.call('TIME')
local now_ms = tonumber(server_time[1]) * 1000 + math.floor(tonumber(server_time[2]) / 1000)
