-- Saves one catalog record and notes it in the change index under the new catalog version, so
-- nodes refresh by reading only what changed since the version they have.
--
-- KEYS[1] the record kind's hash, KEYS[2] catalog version, KEYS[3] change index (ZSET: score =
-- version of the record's latest change, member = "<kind>:<id>")
-- ARGV: id, json, member
local version = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], version, ARGV[3])
return version
