#!/usr/bin/env bash
# Counts the instructions Redis spends inside our Lua scripts per drained job, with callgrind.
# Wall-clock figures on this shared 2-core machine swing by ±30 % run to run; an instruction
# count does not, so a change to claim.lua or settle.lua is judged by this first.
#
#   bash scripts/script-cost.sh [BIN] [JOBS] [CONCURRENCY]     (defaults: release build, 20000, 64)
#
# Runs a private redis-server under valgrind (only EVALSHA/EVAL counted), one
# `prosaas bench drain` against it, and prints instructions per job: in the scripts in all, in
# the Redis commands they call, and the Lua side (argument and reply conversion, the VM).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/prosaas}
N=${2:-20000}
C=${3:-64}
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
valgrind --tool=callgrind --toggle-collect=evalGenericCommand --callgrind-out-file="$dir/cg.out" \
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  --activerehashing no \
  >"$dir/valgrind.log" 2>&1 &
vg=$!
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.3; done
REDIS_URL="redis://127.0.0.1:$port/0" RUST_LOG=warn "$BIN" bench drain --jobs "$N" --concurrency "$C" | tail -1
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait "$vg" || true
inclusive=$(callgrind_annotate --inclusive=yes "$dir/cg.out" 2>/dev/null)
count() { awk -v f="$1" '$0 ~ f {gsub(",", "", $1); print $1; exit}' <<<"$inclusive"; }
total=$(count 'PROGRAM TOTALS')
commands=$(count ':scriptCall ')
echo "instructions per job: scripts $((total / N)), Redis commands inside them $((commands / N)), Lua side $(((total - commands) / N))"
