-- Applies a batch of verified events of one shard atomically: dedupe per (token, type), caps,
-- hides, the ledger record's append to the outbox and the spend budgets read. Every key lives in the shard's
-- hash slot, so this is one script even on a Redis Cluster, and a crash leaves all or nothing.
-- (An error reply is no crash: see the order of an accepted event's writes below.)
--
-- KEYS[1] ledger stream (the outbox), KEYS[2] spend totals hash, KEYS[3] today's spend hash,
-- then per event: user hash, token state key, click key.
-- ARGV[1] now_ms, ARGV[2] day (YYYYMMDD), ARGV[3] event count, ARGV[4] the TTL for a user hash
-- found without one (capping::UNEXPIRING_USER_TTL_MS), ARGV[5] the TTL of a day's spend hash
-- (store::SPEND_DAY_TTL_MS), then FIELDS values per event:
--   type, decision_id, campaign, advertiser, price_micros, token_ttl_ms, user_ttl_ms,
--   campaign_caps ("max:per_seconds,..."), advertiser_caps (same, "" when off),
--   campaign_keep ("count:window_seconds"), advertiser_keep (same, count 0 = off),
--   daily_max, hide_ms, client_at, click_ttl_ms, the user-hash fields of the campaign's
--   and the advertiser's render times and of the advertiser's hide (codec::*_field), and
--   what the ledger record carries for reports: creative, country, os, age band, reach key,
--   and personal: '1', or '0' for a slot served without consent to personalisation, whose
--   events keep nothing per user (no render times, hide or click owner: see src/privacy).
-- The shared user_state.lua is prepended (render time encoding, cap checks).
-- Returns one code per event: 1 accepted, 2 duplicate, 3 out of order, 4 cap reached.
local FIELDS = 24
local BITS = {render = 1, view = 2, click = 4, hide = 8, report = 16}
local REFUSED = 32
local count = tonumber(ARGV[3])
assert(#ARGV == 5 + count * FIELDS and #KEYS == 3 + 3 * count, 'events.lua: wrong arity')
local stamp = math.ceil(now / 1000)
local stamp_digits = encode_stamp(stamp)

-- Appends this render to a list read by stamps() and keeps the newest `keep_n` entries younger
-- than `keep_s`.
local function append(list, digits, keep)
  local keep_n, keep_s = string.match(keep, '(%d+):(%d+)')
  keep_n, keep_s = tonumber(keep_n), tonumber(keep_s)
  list[#list + 1] = stamp
  digits[#digits + 1] = stamp_digits
  local out = {}
  for i = math.max(1, #list - keep_n + 1), #list do
    if list[i] > now_floor - keep_s then
      out[#out + 1] = digits[i]
    end
  end
  return table.concat(out)
end

local results = {}
local billed_any = false
-- User hashes this batch wrote, and how long each must now live: extended once per user after
-- the loop (a device's batch is one user's; each redis.call costs ~2 us of Redis's one core).
local extend = {}
-- Each such user's TTL before this script first wrote the hash (-2: there was none): a hash this
-- script creates has no TTL yet, which must not read as one found without.
local before = {}
local function before_write(user)
  if before[user] == nil then
    before[user] = redis.call('PTTL', user)
  end
end
for i = 1, count do
  local a = 5 + (i - 1) * FIELDS
  local kind, decision, campaign, advertiser = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local price = tonumber(ARGV[a + 5])
  local token_ttl, user_ttl = ARGV[a + 6], tonumber(ARGV[a + 7])
  local caps, adv_caps, keep_c, keep_a = ARGV[a + 8], ARGV[a + 9], ARGV[a + 10], ARGV[a + 11]
  local daily_max, hide_ms, client_at = tonumber(ARGV[a + 12]), tonumber(ARGV[a + 13]), ARGV[a + 14]
  local click_ttl = ARGV[a + 15]
  local campaign_field, advertiser_field, hide_field = ARGV[a + 16], ARGV[a + 17], ARGV[a + 18]
  local user, token, click = KEYS[3 + 3 * i - 2], KEYS[3 + 3 * i - 1], KEYS[3 + 3 * i]
  local personal = ARGV[a + 24] == '1'
  local bit = BITS[kind]
  local flags = tonumber(redis.call('GET', token) or '0')
  local code
  if bit == nil then
    code = 3
  elseif bit == 1 and flags % 64 >= REFUSED then
    code = 4
  elseif math.floor(flags / bit) % 2 == 1 then
    code = 2
    -- A retry of a batch whose script failed after this event: its user hash was written, and
    -- is made to live as long as it must here.
    if personal and (kind == 'render' or kind == 'hide' or kind == 'report') then
      extend[user] = math.max(extend[user] or 0, user_ttl)
    end
  elseif (kind == 'view' or kind == 'click') and flags % 2 == 0 then
    code = 3
  else
    code = 1
    -- A personal render's user-hash fields, written once its record is.
    local render_writes
    if personal and kind == 'render' then
      -- One read and one write of the user hash per render: each redis.call costs ~2 us.
      local stored = redis.call('HMGET', user, campaign_field, advertiser_field, 'd')
      local renders, renders_digits = stamps(stored[1])
      local adv_renders, adv_digits = stamps(stored[2])
      local daily, daily_digits = stamps(stored[3])
      if not allows(renders, caps, 0) or (adv_caps ~= '' and not allows(adv_renders, adv_caps, 0))
          or count_since(daily, now_floor - DAY_S) >= daily_max then
        code = 4
        redis.call('SET', token, flags + REFUSED, 'PX', token_ttl)
      else
        -- A campaign (or advertiser) without caps keeps no render list: nothing per user
        -- that no rule reads.
        render_writes = {'d', append(daily, daily_digits, daily_max .. ':' .. DAY_S)}
        if string.match(keep_c, '^(%d+)') ~= '0' then
          render_writes[3], render_writes[4] = campaign_field, append(renders, renders_digits, keep_c)
        end
        if string.match(keep_a, '^(%d+)') ~= '0' then
          local n = #render_writes
          render_writes[n + 1], render_writes[n + 2] = advertiser_field, append(adv_renders, adv_digits, keep_a)
        end
      end
    end
    if code == 1 then
      -- A write that fails (a key of another type) ends the script and keeps what was written
      -- before it. So the record comes first and the spend last: an event is either left
      -- unjudged (a retry judges it again) or recorded, never marked counted without its
      -- record; a repeated record carries the same id, which the export keeps once.
      local billed = (kind == 'render' and price > 0) and price or 0
      redis.call('XADD', KEYS[1], '*', 'id', decision .. ':' .. kind, 'type', kind, 'campaign', campaign,
        'advertiser', advertiser, 'price', billed, 'at_ms', ARGV[1], 'client_at', client_at,
        'creative', ARGV[a + 19], 'country', ARGV[a + 20], 'os', ARGV[a + 21], 'age', ARGV[a + 22],
        'uk', ARGV[a + 23])
      if render_writes then
        -- Written before the reservation goes, so the hash never empties in between (an
        -- emptied hash loses its TTL, and would come back looking like one that never had one).
        before_write(user)
        redis.call('HSET', user, unpack(render_writes))
        redis.call('HDEL', user, 'r' .. decision)
      elseif personal and (kind == 'hide' or kind == 'report') then
        before_write(user)
        redis.call('HSET', user, hide_field, string.format('%.0f', now + hide_ms))
      elseif kind == 'click' then
        -- Conversions find the click by its id and attribute to this campaign; a conversation
        -- suppresses the campaign in this user's hash (`usr`: its key, in this same slot).
        -- `exp`: until when the click is attributable, compared with a conversion's own time
        -- (the key's TTL runs on Redis's clock from now).
        redis.call('HSET', click, 'adv', advertiser, 'cmp', campaign, 'usr', personal and user or '',
          'exp', string.format('%.0f', now + tonumber(click_ttl)))
        redis.call('PEXPIRE', click, click_ttl)
      end
      redis.call('SET', token, flags + bit, 'PX', token_ttl)
      if personal and (kind == 'render' or kind == 'hide' or kind == 'report') then
        extend[user] = math.max(extend[user] or 0, user_ttl)
      end
      if billed > 0 then
        redis.call('HINCRBY', KEYS[2], campaign, billed)
        redis.call('HINCRBY', KEYS[3], campaign, billed)
        billed_any = true
      end
    end
  end
  results[i] = code
end
-- A day's spend is read that day (daily budgets, reconcile): it expires two days after.
if billed_any and redis.call('PTTL', KEYS[3]) < 0 then
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
for user, ttl in pairs(extend) do
  keep_user(user, before[user] or redis.call('PTTL', user), ttl, tonumber(ARGV[4]))
end
return results
