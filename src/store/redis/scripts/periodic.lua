-- Claims one run of a task done at most once a period by whichever node comes first: claimed
-- when no run was claimed yet or the last claim is at least a period before now (or more than a
-- period after it), and then now is the last claim. Times are the service's clock (passed in), never Redis's.
--
-- KEYS[1] the task's last claim (ms)
-- ARGV[1] now_ms, ARGV[2] period_ms
-- Returns 1 when this call claimed the run, else 0.
assert(#KEYS == 1 and #ARGV == 2, 'periodic.lua takes 1 key and 2 arguments')
local now, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '')
-- A claim more than a period ahead of now (a claimer's clock ran far ahead) holds nothing off.
if last and last - now <= period and now - last < period then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
