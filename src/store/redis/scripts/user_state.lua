-- Shared by the scripts that read or write a user's hash; prepended to each at load time. See
-- src/store/codec.rs for the encoding (mirrored there in Rust). ARGV[1] is always now_ms.
-- Render times are stored in whole seconds rounded up and windows checked against `now`
-- rounded down: rounding never releases a render early.
local now = tonumber(ARGV[1])
local now_floor = math.floor(now / 1000)
local DAY_S = 86400
local STAMP_EPOCH, STAMP_WIDTH, STAMP_MAX = 946684800, 6, 36 ^ 6 - 1
local DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'

local function encode_stamp(seconds)
  local n = math.max(0, math.min(seconds - STAMP_EPOCH, STAMP_MAX))
  local out = {}
  for i = STAMP_WIDTH, 1, -1 do
    local d = n % 36
    out[i] = string.sub(DIGITS, d + 1, d + 1)
    n = (n - d) / 36
  end
  return table.concat(out)
end

-- Render times (unix seconds) of a stored list, six base-36 digits each with no separator, and
-- the digits of each (kept so that rewriting a list encodes only what is new).
local function stamps(raw)
  local out, digits = {}, {}
  if raw and (string.find(raw, ',', 1, true) or #raw % STAMP_WIDTH ~= 0) then
    -- Written by builds before this encoding: decimal seconds joined by commas. Read, and
    -- rewritten in the current encoding by the next write of the list.
    for t in string.gmatch(raw, '%d+') do
      out[#out + 1] = tonumber(t)
      digits[#digits + 1] = encode_stamp(tonumber(t))
    end
    return out, digits
  end
  if raw then
    for i = 1, #raw - STAMP_WIDTH + 1, STAMP_WIDTH do
      local text = string.sub(raw, i, i + STAMP_WIDTH - 1)
      -- tonumber(_, 36) would also take signs and spaces; the encoding has neither.
      local n = string.match(text, '^[0-9a-z]+$') and tonumber(text, 36)
      if n then
        out[#out + 1] = n + STAMP_EPOCH
        digits[#digits + 1] = text
      end
    end
  end
  return out, digits
end

local function count_since(list, start)
  local n = 0
  for _, t in ipairs(list) do
    if t > start then
      n = n + 1
    end
  end
  return n
end

-- True when one more on top of `reserved` keeps every "max:per_seconds" cap over the list.
local function allows(list, caps, reserved)
  for max, per in string.gmatch(caps, '(%d+):(%d+)') do
    if count_since(list, now_floor - tonumber(per)) + reserved >= tonumber(max) then
      return false
    end
  end
  return true
end

-- Makes the user's hash live at least `ttl` ms more, never shortened. `left` is its TTL before
-- this script wrote it (-2: there was none, so it has none yet); one found without a TTL (-1: a
-- script that failed before setting it) gets `longest` (capping::UNEXPIRING_USER_TTL_MS).
local function keep_user(user, left, ttl, longest)
  if left == -1 then
    redis.call('PEXPIRE', user, math.max(ttl, longest))
  elseif left < ttl then
    redis.call('PEXPIRE', user, ttl)
  end
end

-- A reservation field's value: campaign hex, advertiser hex, expiry (ms).
local function reservation(value)
  local campaign, advertiser, expires = string.match(value, '^([^|]*)|([^|]*)|(%d+)$')
  return campaign, advertiser, tonumber(expires or '0')
end

