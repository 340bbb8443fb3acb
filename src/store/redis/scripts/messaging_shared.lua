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

-- Makes a stored message's charge final (moving its monthly count, the invoice and the campaign's
-- message charges) and returns the charge and tier; the ledger record is the caller's.
local function charge_final(t, advertiser, counts, billing, stats)
  local n = redis.call('HINCRBY', counts, advertiser .. '|' .. t[12], 1)
  local price, tier = price_at(t[13], n)
  if price > 0 then
    local field = advertiser .. '|' .. t[10] .. '|' .. t[11]
    redis.call('HINCRBY', billing, field .. '|q', 1)
    redis.call('HINCRBY', billing, field .. '|$', price)
    if t[14] ~= '' then
      redis.call('HINCRBY', stats, t[14] .. '|' .. t[9] .. '|mc', price)
    end
  end
  return price, tier
end
