-- Records one rated business message, all or nothing, if nothing moved since it was rated.
-- The rating was computed (in Rust, `messaging::rate`) from the conversation state ARGV[1]; if
-- the state changed since, return {0, ''} and let the caller rate again. A message id seen before
-- returns {2, its stored message}: it is a duplicate and is charged once. A business-initiated
-- template whose user would take the advertiser past its limit returns {3, ''}, nothing recorded.
-- Every key is in the advertiser's shard, so counts and the limit are exact across its users.
--
-- KEYS[1] conversation, KEYS[2] message, KEYS[3] ledger stream (the outbox), KEYS[4] month
-- counts hash, KEYS[5] business-initiated users (zset)
-- ARGV: expected_state ("" = none), new_state ("" = delete), state_ttl_ms, stored message
--       (billing, charge and tier to fill in), result_ttl_ms, advertiser, message_id, direction,
--       deliver ("1": charge now, else pending), limit (-1: none), user, limit_window_ms, now_ms
-- Returns {1, stored message} when recorded.
local conversation, message, ledger, counts, initiated = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local existing = redis.call('GET', message)
if existing then
  return {2, existing}
end
local current = redis.call('GET', conversation) or ''
if current ~= ARGV[1] then
  return {0, ''}
end
local advertiser, id, direction = ARGV[6], ARGV[7], ARGV[8]
local deliver, limit, user, window = ARGV[9] == '1', tonumber(ARGV[10]), ARGV[11], tonumber(ARGV[12])
local t = fields(ARGV[4])
local at = tonumber(t[15])
if limit >= 0 then
  -- The business-initiated limit: a user already reached in the last 24 h is free to reach
  -- again; a new one only while fewer than `limit` others were.
  local since = at - window
  local mine = redis.call('ZSCORE', initiated, user)
  if not (mine and tonumber(mine) > since) then
    local others = redis.call('ZCOUNT', initiated, '(' .. since, '(' .. (at + window))
    if others >= limit then
      return {3, ''}
    end
  end
  redis.call('ZADD', initiated, 'GT', at, user)
  -- From the earlier of its date and now: a message dated ahead must not drop the users
  -- reached until then.
  local from = math.min(at, tonumber(ARGV[13]))
  redis.call('ZREMRANGEBYSCORE', initiated, '-inf', '(' .. (from - 2 * window))
  if redis.call('PTTL', initiated) < 2 * window then
    redis.call('PEXPIRE', initiated, 2 * window)
  end
end
if ARGV[2] == '' then
  redis.call('DEL', conversation)
elseif ARGV[2] ~= current or redis.call('PTTL', conversation) < tonumber(ARGV[3]) then
  redis.call('SET', conversation, ARGV[2], 'PX', ARGV[3])
end
local price, tier = 0, nil
if t[12] == '' then
  t[5] = 'final'
elseif deliver then
  price, tier = charge_final(t, advertiser, counts)
  t[5] = 'final'
else
  -- What it would cost if delivered now; the count moves only when it is.
  local n = tonumber(redis.call('HGET', counts, advertiser .. '|' .. t[12]) or '0') + 1
  price, tier = price_at(t[13], n)
  t[5] = 'pending'
end
t[6] = string.format('%d', price)
t[7] = (t[16] == '1' and tier) and tostring(tier) or ''
local stored = table.concat(t, '|')
redis.call('SET', message, stored, 'PX', ARGV[5])
local billed = (t[5] == 'final') and price or 0
redis.call('XADD', ledger, '*', 'id', 'msg:' .. advertiser .. ':' .. id, 'type', 'business_message',
  'advertiser', advertiser, 'category', billed > 0 and t[10] or '', 'country', t[11], 'price', billed,
  'at_ms', t[15], 'direction', direction, 'reason', t[2], 'billing', t[5], 'campaign', t[14])
return {1, stored}
