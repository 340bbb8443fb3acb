-- Commits one slot decision for one user, all or nothing.
-- The decision was computed from the user's state at version ARGV[1]; if anything wrote to the
-- user since (a render, another decision), the decision may break a cap, so refuse (return 0)
-- and let the caller decide again on fresh state. Otherwise record the reservations (pruning
-- expired ones), the session's placement state and the served counters, bump the version.
--
-- KEYS[1] user hash, KEYS[2] session key, KEYS[3] shard stats hash
-- ARGV: expected_version, now_ms, user_ttl_ms, session_value, session_ttl_ms, has_session(0|1),
--       day, n, then n pairs (reservation_entry, campaign_id)
local user, session, stats = KEYS[1], KEYS[2], KEYS[3]
local version = tonumber(redis.call('HGET', user, 'v') or '0')
if version ~= tonumber(ARGV[1]) then
  return 0
end
local now = tonumber(ARGV[2])
local kept = {}
local current = redis.call('HGET', user, 'r')
if current then
  for entry in string.gmatch(current, '[^;]+') do
    local expires = tonumber(string.match(entry, '|(%d+)$'))
    if expires and expires > now then
      kept[#kept + 1] = entry
    end
  end
end
local day, n = ARGV[7], tonumber(ARGV[8])
for i = 1, n do
  kept[#kept + 1] = ARGV[8 + 2 * i - 1]
  redis.call('HINCRBY', stats, ARGV[8 + 2 * i] .. '|' .. day .. '|s', 1)
end
if #kept > 0 then
  redis.call('HSET', user, 'r', table.concat(kept, ';'))
else
  redis.call('HDEL', user, 'r')
end
redis.call('HSET', user, 'v', version + 1)
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', user) < ttl then
  redis.call('PEXPIRE', user, ttl)
end
if ARGV[6] == '1' then
  redis.call('SET', session, ARGV[4], 'PX', ARGV[5])
end
return 1
