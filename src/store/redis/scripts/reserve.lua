-- Commits one slot decision for one user, all or nothing, if the user's live state still allows
-- it; otherwise changes nothing and returns that live state (the hash and the session value) so
-- the caller decides again without another read. The decision may have been computed on a stale
-- or assumed copy of the state; it is exact on the live one when every campaign it rests on
-- (winners and the runner-ups that set their prices) is still eligible for the user, its slots
-- fit the daily load and the session is the one it placed by. capping::UserState::admits is the
-- same rule in Rust.
--
-- KEYS[1] user hash, KEYS[2] session key, KEYS[3] shard stats hash
-- ARGV: now_ms, user_ttl_ms, has_session (0|1), session_seen ('' = none), session_after,
--       session_ttl_ms, day, daily_max, r (reservations), k (checks), then r triples
--       (field, value, campaign_id), then k quadruples (campaign hex, advertiser hex,
--       caps "max:per_seconds,...", advertiser_caps 0|1).
-- Returns 1 when committed, else {hash fields and values, session value or ''}.
local user, session, stats = KEYS[1], KEYS[2], KEYS[3]
local has_session = ARGV[3] == '1'
local day, daily_max = ARGV[7], tonumber(ARGV[8])
local r, k = tonumber(ARGV[9]), tonumber(ARGV[10])
local checks = 10 + 3 * r

local flat = redis.call('HGETALL', user)
local fields = {}
for i = 1, #flat, 2 do
  fields[flat[i]] = flat[i + 1]
end
local stored_session = has_session and redis.call('GET', session) or false

-- Live reservations, counted per campaign and advertiser; expired ones are pruned on commit.
local by_campaign, by_advertiser, live, expired = {}, {}, 0, {}
for field, value in pairs(fields) do
  if string.sub(field, 1, 1) == 'r' then
    local campaign, advertiser, expires = reservation(value)
    if campaign and expires > now then
      by_campaign[campaign] = (by_campaign[campaign] or 0) + 1
      by_advertiser[advertiser] = (by_advertiser[advertiser] or 0) + 1
      live = live + 1
    else
      expired[#expired + 1] = field
    end
  end
end

local function eligible(campaign, advertiser, caps, advertiser_caps)
  if tonumber(fields['h' .. advertiser] or '0') > now then
    return false
  end
  if not allows(stamps(fields['c' .. campaign]), caps, by_campaign[campaign] or 0) then
    return false
  end
  return advertiser_caps ~= '1'
    or allows(stamps(fields['a' .. advertiser]), caps, by_advertiser[advertiser] or 0)
end

local holds = (not has_session or (stored_session or '') == ARGV[4])
  and count_since(stamps(fields['d']), now_floor - DAY_S) + live + r <= daily_max
for i = 0, k - 1 do
  if not holds then
    break
  end
  local a = checks + 4 * i
  holds = eligible(ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
end
if not holds then
  return {flat, stored_session or ''}
end

if #expired > 0 then
  redis.call('HDEL', user, unpack(expired))
end
-- One HSET for every reservation: each redis.call costs ~2 us of Redis's one core.
local writes = {}
for i = 0, r - 1 do
  local a = 10 + 3 * i
  writes[2 * i + 1], writes[2 * i + 2] = ARGV[a + 1], ARGV[a + 2]
  redis.call('HINCRBY', stats, ARGV[a + 3] .. '|' .. day .. '|s', 1)
end
redis.call('HSET', user, unpack(writes))
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', user) < ttl then
  redis.call('PEXPIRE', user, ttl)
end
if has_session then
  redis.call('SET', session, ARGV[5], 'PX', ARGV[6])
end
return 1
