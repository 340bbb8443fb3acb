#!/usr/bin/env bash
# What one billed render costs Redis, against what any script call with its arguments costs:
# `events.lua` (with its shared prelude, as the store loads it) for one render of a new user,
# a script that returns at once with the same keys and arguments, and a GET, each as Redis CPU
# per call over `redis-benchmark` runs in alternating rounds on one fresh `redis-server`
# (no AOF, as the load bench). The load bench's "billed render" target compares a render with
# a GET; this says how much of that ratio any script call of this arity already is.
#
# benches/events_script_floor.sh [calls per run, default 100000] [rounds, default 3]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
calls=${1:-100000}
rounds=${2:-3}
scratch=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --logfile "$scratch/redis.log" --pidfile "$scratch/redis.pid" >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
pid=$(cat "$scratch/redis.pid")
scripts="$here/src/store/redis/scripts"
cat "$scripts/user_state.lua" "$scripts/events.lua" >"$scratch/events.lua"
echo "return {1}" >"$scratch/empty.lua"
events=$(redis-cli -p "$port" SCRIPT LOAD "$(cat "$scratch/events.lua")")
empty=$(redis-cli -p "$port" SCRIPT LOAD "$(cat "$scratch/empty.lua")")
# One render (events.lua's header documents KEYS and ARGV): a new token and user each call.
call_args() {
  echo 6 'ledger:{s1}' 'spend:{s1}' 'spend:{s1}:20261203' 'u:{s1}:user__rand_int__' \
    't:{s1}:tok__rand_int__' 'click:{s1}:tok__rand_int__' \
    1795000000000 20261203 1 31622400000 \
    render tok__rand_int__ 0a1b2c3d 0f0e0d0c 1000 1200000 86400000 3:86400 '""' 3:86400 0:0 20 \
    7776000000 '""' 2592000000 c0a1b2c3d a0f0e0d0c h0f0e0d0c cr1 IT android 25-34 ukabc 1
}
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
declare -A ticks=([events]=0 [empty]=0 [get]=0)
run() {
  local name=$1
  shift
  local before
  before=$(cpu)
  redis-benchmark -p "$port" -c 8 -n "$calls" -r 100000000 -q "$@" >/dev/null
  ticks[$name]=$((ticks[$name] + $(cpu) - before))
}
for _ in $(seq "$rounds"); do
  # shellcheck disable=SC2046 # the arguments are words, `""` an empty one
  eval run events EVALSHA "$events" $(call_args)
  eval run empty EVALSHA "$empty" $(call_args)
  run get GET 'k:__rand_int__'
done
hz=$(getconf CLK_TCK)
python3 - "$hz" "$calls" "$rounds" "${ticks[events]}" "${ticks[empty]}" "${ticks[get]}" <<'EOF'
import sys
hz, calls, rounds, *ticks = map(int, sys.argv[1:])
us = [t / hz * 1e6 / (calls * rounds) for t in ticks]
print("| Redis CPU per call | µs | vs a GET |")
print("| --- | --- | --- |")
for name, value in zip(["events.lua, one billed render", "a script returning at once, same arguments", "GET"], us):
    print(f"| {name} | {value:.1f} | {value / us[2]:.2f}x |")
EOF
