-- Attributes a click-to-chat conversion to the click's campaign, all or nothing.
-- A `conversation_started` counts once per click; a `message` counts every call, each with its
-- own stable ledger id. A click that does not exist, belongs to another advertiser or is dated
-- past its attribution is unknown.
-- The ledger record carries the click id: the conversions API lists conversions from the
-- record. A conversation started from a campaign that suppresses after one marks it in the
-- user's hash.
--
-- KEYS[1] click key, KEYS[2] ledger stream (the outbox), KEYS[3] the clicking user's hash
--   (the click key again when not suppressing; must be the click's `usr`)
-- ARGV: advertiser, type, at_ms, decision id, click id, suppress field ("" = none),
--       suppressed until (ms)
-- Returns 1 accepted, 2 duplicate, 3 unknown click.
assert(#KEYS == 3 and #ARGV == 7, 'conversion.lua: wrong arity')
local click, ledger, user = KEYS[1], KEYS[2], KEYS[3]
local advertiser, kind, at, decision = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local click_id, suppress, suppress_until = ARGV[5], ARGV[6], tonumber(ARGV[7])
local owner, expires = unpack(redis.call('HMGET', click, 'adv', 'exp'))
-- A conversion dated past the click's attribution is unknown (clicks of earlier builds carry
-- no `exp`: their key's TTL bounds them).
if not owner or owner ~= advertiser or (expires and tonumber(at) >= tonumber(expires)) then
  return 3
end
local campaign = redis.call('HGET', click, 'cmp')
local id
if kind == 'conversation_started' then
  if redis.call('HEXISTS', click, 'conv') == 1 then
    return 2
  end
  id = decision .. ':conversation'
else
  -- A message's number is spent even if a later write fails: the retry is a message of its own.
  id = decision .. ':message:' .. redis.call('HINCRBY', click, 'msgs', 1)
end
-- A write that fails keeps what was written before it: the record and the suppression come
-- before the mark that makes a retry a duplicate (see events.lua).
redis.call('XADD', ledger, '*', 'id', id, 'type', kind, 'campaign', campaign, 'advertiser', advertiser,
  'price', 0, 'at_ms', at, 'click', click_id)
if kind == 'conversation_started' then
  if suppress ~= '' and user ~= click and redis.call('HGET', click, 'usr') == user then
    redis.call('HSET', user, suppress, string.format('%.0f', suppress_until))
    if redis.call('PTTL', user) < suppress_until - tonumber(at) then
      redis.call('PEXPIRE', user, string.format('%.0f', suppress_until - tonumber(at)))
    end
  end
  redis.call('HSET', click, 'conv', at)
end
return 1
