-- Attributes a click-to-chat conversion to the click's campaign, all or nothing.
-- A `conversation_started` counts once per click; a `message` counts every call, each with its
-- own stable ledger id. A click that does not exist or belongs to another advertiser is unknown.
-- Every accepted conversion is listed in the day's conversion log (the conversions API); a
-- conversation started from a campaign that suppresses after one marks it in the user's hash.
--
-- KEYS[1] click key, KEYS[2] ledger stream (the outbox), KEYS[3] the day's conversion log,
-- KEYS[4] the clicking user's hash ("" when not suppressing; must be the click's `usr`)
-- ARGV: advertiser, type, day (YYYYMMDD of `at`), at_ms, decision id, click id, log_ttl_ms,
--       suppress field ("" = none), suppressed until (ms)
-- Returns 1 accepted, 2 duplicate, 3 unknown click.
local click, ledger, log, user = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local advertiser, kind, day, at, decision = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local click_id, log_ttl, suppress, suppress_until = ARGV[6], tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local owner = redis.call('HGET', click, 'adv')
if not owner or owner ~= advertiser then
  return 3
end
local campaign = redis.call('HGET', click, 'cmp')
local id
if kind == 'conversation_started' then
  if redis.call('HSETNX', click, 'conv', at) == 0 then
    return 2
  end
  id = decision .. ':conversation'
  if suppress ~= '' and user ~= '' and redis.call('HGET', click, 'usr') == user then
    redis.call('HSET', user, suppress, string.format('%.0f', suppress_until))
    if redis.call('PTTL', user) < suppress_until - tonumber(at) then
      redis.call('PEXPIRE', user, string.format('%.0f', suppress_until - tonumber(at)))
    end
  end
else
  id = decision .. ':message:' .. redis.call('HINCRBY', click, 'msgs', 1)
end
redis.call('XADD', ledger, '*', 'id', id, 'type', kind, 'campaign', campaign, 'advertiser', advertiser,
  'price', 0, 'at_ms', at)
redis.call('RPUSH', log, advertiser .. '|' .. campaign .. '|' .. click_id .. '|' .. kind .. '|' .. at)
if redis.call('PTTL', log) < 0 then
  redis.call('PEXPIRE', log, log_ttl)
end
return 1
