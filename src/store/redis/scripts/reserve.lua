-- Commits one slot decision for one user, all or nothing, if the user's live state still gives
-- that decision; otherwise changes nothing and returns that live state (the hash and the session
-- value) so the caller decides again without another read. The decision was computed on a stale
-- or assumed copy of the state. It is the live state's decision when every campaign it rests on
-- (winners and the runner-ups that set their prices) is still eligible for the user, its slots
-- fit the daily load, every reservation the copy counted is still pending (the only way a copy
-- can be stricter than the live state) and the session is the one it placed by.
-- capping::UserState::admits is the same rule in Rust.
--
-- KEYS[1] user hash (its `s<hash>` fields hold the user's sessions)
-- ARGV: now_ms, user_ttl_ms, session_field ('' = no session), session_seen ('' = none),
--       session_after, daily_max, then three counts: reservations, checks, held; the TTL
--       for a hash found without one (capping::UNEXPIRING_USER_TTL_MS); the longest cap
--       window in seconds (domain::campaign::MAX_CAP_WINDOW_S); then a
--       pair per reservation (user-hash field, value), a quadruple per check (campaign
--       hex, advertiser hex, caps "max:per_seconds,...", advertiser_caps 0|1) and the decision
--       id of each held reservation.
-- Returns 1 when committed, else {hash fields and values, session value or ''}.
local user = KEYS[1]
local session_field = ARGV[3]
local has_session = session_field ~= ''
local daily_max = tonumber(ARGV[6])
local reservations, checks, held = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local longest_window = tonumber(ARGV[11])
local reservations_at = 11
local checks_at = reservations_at + 2 * reservations
local held_at = checks_at + 4 * checks
assert(#ARGV == held_at + held and #KEYS == 1, 'reserve.lua: wrong arity')

local flat = redis.call('HGETALL', user)
local fields = {}
for i = 1, #flat, 2 do
  fields[flat[i]] = flat[i + 1]
end
local stored_session = has_session and fields[session_field] or false

-- Pending reservations, counted per campaign and advertiser; expired ones, forgotten sessions
-- (`served,carry,forget_after_ms`) and what no rule reads any more (codec::outlived: hides
-- and suppressions past their end, render lists older than any window) are pruned on commit.
local by_campaign, by_advertiser, pending, expired = {}, {}, 0, {}
for field, value in pairs(fields) do
  local kind = string.sub(field, 1, 1)
  if kind == 's' then
    local forget_after = tonumber(string.match(value, '^[^,]*,[^,]*,(%d+)$') or '0')
    if forget_after <= now and field ~= session_field then
      expired[#expired + 1] = field
    end
  elseif kind == 'r' then
    local campaign, advertiser, expires = reservation(value)
    if campaign and expires > now then
      by_campaign[campaign] = (by_campaign[campaign] or 0) + 1
      by_advertiser[advertiser] = (by_advertiser[advertiser] or 0) + 1
      pending = pending + 1
    else
      expired[#expired + 1] = field
    end
  elseif kind == 'h' or kind == 'x' then
    if (tonumber(value) or now + 1) <= now then
      expired[#expired + 1] = field
    end
  elseif kind == 'c' or kind == 'a' or field == 'd' then
    local times = stamps(value)
    local newest = -math.huge
    for _, t in ipairs(times) do
      newest = math.max(newest, t)
    end
    if newest <= now_floor - (field == 'd' and DAY_S or longest_window) then
      expired[#expired + 1] = field
    end
  end
end

local function eligible(campaign, advertiser, caps, advertiser_caps)
  if (tonumber(fields['h' .. advertiser] or '') or 0) > now
      or (tonumber(fields['x' .. campaign] or '') or 0) > now then
    return false
  end
  -- stamps() returns two lists; as a middle argument only the first is passed.
  if not allows(stamps(fields['c' .. campaign]), caps, by_campaign[campaign] or 0) then
    return false
  end
  return advertiser_caps ~= '1'
    or allows(stamps(fields['a' .. advertiser]), caps, by_advertiser[advertiser] or 0)
end

local function still_pending(decision)
  local value = fields['r' .. decision]
  if not value then
    return false
  end
  local _, _, expires = reservation(value)
  return expires > now
end

-- A user with no hash (new, or expired) has no render, hide or pending reservation: every
-- check holds, so none is read (the common decision for a new user).
local known = #flat > 0
local holds = (not has_session or (stored_session or '') == ARGV[4])
  and count_since(stamps(fields['d']), now_floor - DAY_S) + pending + reservations <= daily_max
for i = 0, checks - 1 do
  if not holds or not known then
    break
  end
  local a = checks_at + 4 * i
  holds = eligible(ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
end
for i = 1, held do
  if not holds then
    break
  end
  holds = still_pending(ARGV[held_at + i])
end
if not holds then
  return {flat, stored_session or ''}
end

-- One HSET for every reservation: each redis.call costs ~2 us of Redis's one core. Written
-- before the pruning below, so the hash never empties in between (an emptied hash loses its
-- TTL, and would come back looking like one that never had one).
local writes = {}
for i = 0, reservations - 1 do
  local a = reservations_at + 2 * i
  writes[2 * i + 1], writes[2 * i + 2] = ARGV[a + 1], ARGV[a + 2]
end
if has_session then
  local n = #writes
  writes[n + 1], writes[n + 2] = session_field, ARGV[5]
end
if #writes > 0 then
  redis.call('HSET', user, unpack(writes))
end
if #expired > 0 then
  redis.call('HDEL', user, unpack(expired))
end
-- Read after the writes, which never empty the hash: its TTL as it was (render times it holds
-- may need the longest rule).
keep_user(user, known and redis.call('PTTL', user) or -2, tonumber(ARGV[2]), tonumber(ARGV[10]))
return 1
