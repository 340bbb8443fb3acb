-- Attributes a click-to-chat conversion to the click's campaign, all or nothing.
-- A `conversation_started` counts once per click; a `message` counts every call, each with its
-- own stable ledger id. A click that does not exist or belongs to another advertiser is unknown.
--
-- KEYS[1] click key, KEYS[2] ledger stream, KEYS[3] stats hash
-- ARGV: advertiser, type, day (YYYYMMDD of `at`), at_ms, decision id
-- Returns 1 accepted, 2 duplicate, 3 unknown click.
local click, ledger, stats = KEYS[1], KEYS[2], KEYS[3]
local advertiser, kind, day, at, decision = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local owner = redis.call('HGET', click, 'adv')
if not owner or owner ~= advertiser then
  return 3
end
local campaign = redis.call('HGET', click, 'cmp')
local id, stat
if kind == 'conversation_started' then
  if redis.call('HSETNX', click, 'conv', at) == 0 then
    return 2
  end
  id, stat = decision .. ':conversation', 'cv'
else
  id, stat = decision .. ':message:' .. redis.call('HINCRBY', click, 'msgs', 1), 'm'
end
redis.call('XADD', ledger, '*', 'id', id, 'type', kind, 'campaign', campaign, 'advertiser', advertiser,
  'price', 0, 'at_ms', at)
redis.call('HINCRBY', stats, campaign .. '|' .. day .. '|' .. stat, 1)
return 1
