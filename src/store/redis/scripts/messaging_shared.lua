-- Shared by message.lua and message_status.lua (prepended at load time): the stored message's
-- fields by position (see store::StoredMessage) and the tier rule (messaging::rules::price_at).
local function fields(raw)
  local out = {}
  for f in string.gmatch(raw .. '|', '([^|]*)|') do
    out[#out + 1] = f
  end
  return out
end

-- The rate of the n-th counted message of the month and its tier (both 1-based), from
-- `from:micros,from:micros,...` in increasing `from` order.
local function price_at(schedule, n)
  local price, tier, index = nil, 1, 0
  for from, micros in string.gmatch(schedule, '(%d+):(%-?%d+)') do
    index = index + 1
    if price == nil then
      price = tonumber(micros)
    end
    if n >= tonumber(from) then
      price, tier = tonumber(micros), index
    end
  end
  return price or 0, tier
end

-- Makes a stored message's charge final (moving its monthly count) and returns the charge and
-- tier; the ledger record (what invoices and reports count) is the caller's.
local function charge_final(t, advertiser, counts)
  local n = redis.call('HINCRBY', counts, advertiser .. '|' .. t[12], 1)
  return price_at(t[13], n)
end
