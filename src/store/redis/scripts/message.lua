-- Records one rated business message, all or nothing, if nothing moved since it was rated.
-- The rating was computed (in Rust, `messaging::rate`) from the conversation state ARGV[1]; if
-- the state changed since, return {0, ''} and let the caller rate again. A message id seen before
-- returns {2, its stored result}: it is a duplicate and is charged once.
--
-- KEYS[1] conversation key, KEYS[2] message key, KEYS[3] ledger stream, KEYS[4] month billing hash
-- ARGV: expected_state ("" = none), new_state ("" = delete), state_ttl_ms, result, result_ttl_ms,
--       advertiser, category ("" = none), country, price_micros, at_ms, message_id, direction, reason
local conversation, message, ledger, billing = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local existing = redis.call('GET', message)
if existing then
  return {2, existing}
end
local current = redis.call('GET', conversation) or ''
if current ~= ARGV[1] then
  return {0, ''}
end
if ARGV[2] == '' then
  redis.call('DEL', conversation)
elseif ARGV[2] ~= current or redis.call('PTTL', conversation) < tonumber(ARGV[3]) then
  redis.call('SET', conversation, ARGV[2], 'PX', ARGV[3])
end
redis.call('SET', message, ARGV[4], 'PX', ARGV[5])
local advertiser, category, country, price = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
redis.call('XADD', ledger, '*', 'id', 'msg:' .. advertiser .. ':' .. ARGV[11], 'type', 'business_message',
  'advertiser', advertiser, 'category', category, 'country', country, 'price', price, 'at_ms', ARGV[10],
  'direction', ARGV[12], 'reason', ARGV[13])
if price > 0 then
  local field = advertiser .. '|' .. category .. '|' .. country
  redis.call('HINCRBY', billing, field .. '|q', 1)
  redis.call('HINCRBY', billing, field .. '|$', price)
end
return {1, ''}
