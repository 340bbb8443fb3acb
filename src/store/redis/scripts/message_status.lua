-- Applies the delivery status of a business message recorded as sent, exactly once: the first
-- status makes the pending charge final (delivered, read) or void (failed); any later one
-- returns {2, the stored message} unchanged. An unknown message returns {0, ''}.
--
-- KEYS[1] message, KEYS[2] ledger stream (the outbox), KEYS[3] month counts hash
-- ARGV: advertiser, message_id, void ("1": failed)
-- Returns {1, stored message} when this call settled it.
local message, ledger, counts = KEYS[1], KEYS[2], KEYS[3]
local advertiser, id, void = ARGV[1], ARGV[2], ARGV[3] == '1'
local raw = redis.call('GET', message)
if not raw then
  return {0, ''}
end
local t = fields(raw)
if t[1] ~= 'm2' or t[5] ~= 'pending' then
  return {2, raw}
end
local price, tier = 0, nil
if void then
  t[5] = 'void'
else
  price, tier = charge_final(t, advertiser, counts)
  t[5] = 'final'
end
t[6] = string.format('%d', price)
t[7] = (t[16] == '1' and tier) and tostring(tier) or ''
local stored = table.concat(t, '|')
redis.call('SET', message, stored, 'KEEPTTL')
-- The id's ':status' is ledger::messages::STATUS_SUFFIX, which no message id may end in.
redis.call('XADD', ledger, '*', 'id', 'msg:' .. advertiser .. ':' .. id .. ':status', 'type', 'message_status',
  'advertiser', advertiser, 'category', price > 0 and t[10] or '', 'country', t[11], 'price', price,
  'at_ms', t[15], 'billing', t[5], 'campaign', t[14])
return {1, stored}
