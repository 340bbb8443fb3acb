#!/usr/bin/env bash
# What the request path's two scripts cost Redis, and how much of it any design of them must
# pay: for a decision's commit (`reserve.lua`, a new user placing 3 ads) and for one billed
# render (`events.lua`, a new token of a new user), each with its shared prelude as the store
# loads it, against
#   - the same Redis commands on the same keys with nothing else (the writes the rules need:
#     what is left if the script's own Lua cost nothing),
#   - a script that returns at once with the same keys and arguments (any script call), and
#   - a GET,
# as Redis CPU per call over `redis-benchmark` runs in alternating rounds on one fresh
# `redis-server` (no AOF, as the load bench). The load bench's Redis targets compare a
# decision and a billed render with a GET; this says which part of each ratio is the script's
# Lua, which the commands, and which the call itself.
#
# benches/script_floor.sh [calls per run, default 50000] [rounds, default 3]
# The `eval`s below take the argument lists as words, `""` an empty one.
# shellcheck disable=SC2046
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
calls=${1:-50000}
rounds=${2:-3}
scratch=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --logfile "$scratch/redis.log" --pidfile "$scratch/redis.pid" >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
pid=$(cat "$scratch/redis.pid")
scripts="$here/src/store/redis/scripts"
cat "$scripts/user_state.lua" "$scripts/reserve.lua" >"$scratch/reserve.lua"
cat "$scripts/user_state.lua" "$scripts/events.lua" >"$scratch/events.lua"
echo "return {1}" >"$scratch/empty.lua"
# reserve.lua's commands for a new user without a session: the hash read, one write of the
# reservations, its TTL.
cat >"$scratch/reserve_commands.lua" <<'LUA'
redis.call('HGETALL', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16], ARGV[17])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
LUA
# events.lua's commands for one accepted personal render (its header's order of writes).
cat >"$scratch/events_commands.lua" <<'LUA'
local a = 5
redis.call('GET', KEYS[5])
redis.call('HMGET', KEYS[4], ARGV[a + 16], ARGV[a + 17], 'd')
redis.call('XADD', KEYS[1], '*', 'id', ARGV[a + 2] .. ':render', 'type', 'render', 'campaign', ARGV[a + 3],
  'advertiser', ARGV[a + 4], 'price', ARGV[a + 5], 'at_ms', ARGV[1], 'client_at', ARGV[a + 14],
  'creative', ARGV[a + 19], 'country', ARGV[a + 20], 'os', ARGV[a + 21], 'age', ARGV[a + 22],
  'uk', ARGV[a + 23])
redis.call('PTTL', KEYS[4])
redis.call('HSET', KEYS[4], 'd', '0ab1cd', ARGV[a + 16], '0ab1cd')
redis.call('HDEL', KEYS[4], 'r' .. ARGV[a + 2])
redis.call('SET', KEYS[5], '1', 'PX', ARGV[a + 6])
redis.call('HINCRBY', KEYS[2], ARGV[a + 3], ARGV[a + 5])
redis.call('HINCRBY', KEYS[3], ARGV[a + 3], ARGV[a + 5])
redis.call('PTTL', KEYS[3])
redis.call('PEXPIRE', KEYS[4], ARGV[a + 7])
return {1}
LUA
load() { redis-cli -p "$port" SCRIPT LOAD "$(cat "$scratch/$1.lua")"; }
# A decision's commit (reserve.lua's header documents KEYS and ARGV): a new user each call,
# no session, three reservations and the three campaigns' checks. 31622400000 and 31536000 are
# capping::UNEXPIRING_USER_TTL_MS and domain::campaign::MAX_CAP_WINDOW_S; 259200000 (below) is
# store::SPEND_DAY_TTL_MS.
reserve_args() {
  # Quoted for the `eval` below: the value holds `|`.
  local value="'0a1b2c3d|0f0e0d0c|1795001300000'"
  echo 1 'u:{s1}:user__rand_int__' 1795000000000 1300000 '""' '""' '""' 20 3 3 0 31622400000 \
    31536000 r1tok__rand_int__ "$value" r2tok__rand_int__ "$value" r3tok__rand_int__ "$value" \
    0a1b2c3d 0f0e0d0c 3:86400 0 0a1b2c3e 0f0e0d0d 3:86400,10:604800 1 0a1b2c3f 0f0e0d0e 3:86400 0
}
# One render (events.lua's header documents KEYS and ARGV): a new token and user each call.
events_args() {
  echo 6 'ledger:{s1}' 'spend:{s1}' 'spend:{s1}:20261203' 'u:{s1}:user__rand_int__' \
    't:{s1}:tok__rand_int__' 'click:{s1}:tok__rand_int__' \
    1795000000000 20261203 1 31622400000 259200000 \
    render tok__rand_int__ 0a1b2c3d 0f0e0d0c 1000 1200000 86400000 3:86400 '""' 3:86400 0:0 20 \
    7776000000 '""' 2592000000 c0a1b2c3d a0f0e0d0c h0f0e0d0c cr1 IT android 25-34 ukabc 1
}
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
declare -A sha ticks
for name in reserve reserve_commands events events_commands empty; do
  sha[$name]=$(load "$name")
done
measures=(reserve reserve_commands reserve_empty events events_commands events_empty get)
for name in "${measures[@]}"; do ticks[$name]=0; done
run() {
  local name=$1
  shift
  local before
  # Each measure creates its keys into an empty keyspace (outside its CPU window).
  redis-cli -p "$port" FLUSHALL >/dev/null
  before=$(cpu)
  redis-benchmark -p "$port" -c 8 -n "$calls" -r 100000000 -q "$@" >/dev/null
  ticks[$name]=$((ticks[$name] + $(cpu) - before))
}
for _ in $(seq "$rounds"); do
  eval run reserve EVALSHA "${sha[reserve]}" $(reserve_args)
  eval run reserve_commands EVALSHA "${sha[reserve_commands]}" $(reserve_args)
  eval run reserve_empty EVALSHA "${sha[empty]}" $(reserve_args)
  eval run events EVALSHA "${sha[events]}" $(events_args)
  eval run events_commands EVALSHA "${sha[events_commands]}" $(events_args)
  eval run events_empty EVALSHA "${sha[empty]}" $(events_args)
  run get GET 'k:__rand_int__'
done
errors=$(redis-cli -p "$port" INFO commandstats | grep -o 'failed_calls=[1-9][0-9]*' || true)
if [ -n "$errors" ]; then
  echo "a measured call failed: $errors" >&2
  redis-cli -p "$port" INFO commandstats >&2
  exit 1
fi
# Each measured script took the path it stands for: a render recorded (one XADD per call of
# events.lua and of its commands), a commit written (one HSET per call of each of the four).
# Random ids repeat now and then (`__rand_int__` draws from 10^8), and a repeated token is a
# duplicate: one call in a thousand may take the other path.
calls_of() {
  local n
  n=$(redis-cli -p "$port" INFO commandstats | tr -d '\r' | sed -n "s/^cmdstat_$1:calls=\([0-9]*\),.*/\1/p")
  echo "${n:-0}"
}
expected=$((calls * rounds * 999 / 1000))
if [ "$(calls_of xadd)" -lt $((2 * expected)) ] || [ "$(calls_of hset)" -lt $((4 * expected)) ]; then
  echo "a measured script did not take its path: XADD $(calls_of xadd), HSET $(calls_of hset) calls" >&2
  exit 1
fi
hz=$(getconf CLK_TCK)
args=("$hz" "$calls" "$rounds")
for name in "${measures[@]}"; do args+=("${ticks[$name]}"); done
python3 - "${args[@]}" <<'EOF_PY'
import sys
hz, calls, rounds, *ticks = map(int, sys.argv[1:])
us = [t / hz * 1e6 / (calls * rounds) for t in ticks]
names = [
    "reserve.lua: a decision's commit (new user, 3 ads)",
    "  its Redis commands alone",
    "  a script returning at once, same arguments",
    "events.lua: one billed render",
    "  its Redis commands alone",
    "  a script returning at once, same arguments",
    "GET",
]
print("| Redis CPU per call | µs | vs a GET |")
print("| --- | --- | --- |")
for name, value in zip(names, us):
    print(f"| {name} | {value:.1f} | {value / us[-1]:.2f}x |")
EOF_PY
