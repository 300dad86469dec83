#!/usr/bin/env bash
# Counts the instructions Redis spends per drained job, with callgrind.
# Wall-clock figures on this shared 2-core machine swing by ±30 % run to run; an instruction
# count does not at concurrency 1, so a change to claim.lua or settle.lua is judged by this first
# (at higher concurrency the jobs per script call depend on timing: the count varies by a few
# percent run to run, the Lua side least).
#
#   bash scripts/script-cost.sh [BIN] [JOBS] [CONCURRENCY]     (defaults: release build, 20000, 64)
#   bash scripts/script-cost.sh --json BIN JOBS CONCURRENCY    (one JSON line, for the CI guard)
#   bash scripts/script-cost.sh --floor [JOBS] [BATCH]         (defaults: 20000, 64)
#
# The first form runs a private redis-server under valgrind (only EVALSHA/EVAL counted), one
# `prosaas bench drain` against it (a plain drain of JOBS jobs, then a fair one of as many: the
# count covers both, per JOBS), and prints instructions per job: in the scripts in all, in the
# Redis commands they call, and the Lua side (argument and reply conversion, the VM). --json
# prints the same with the bench's own figures (commands per job of each drain), for
# scripts/cost-guard.sh.
#
# --floor counts the same commands sent plainly by scripts/drain-floor.py (no scripts, no
# atomicity): Redis's command processing (processCommand: lookup, execution, reply) per job,
# with the enqueue phase subtracted by a second run that only enqueues.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }

dir=$(mktemp -d)
port=
trap '[ -z "$port" ] || redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT

# Runs "$@" against a fresh redis-server under callgrind, counting only inside function $1;
# sets `total` to the instruction count (not run in a subshell, so the EXIT trap sees `port`).
count() {
  local toggle=$1
  shift
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  rm -f "$dir/cg.out"
  valgrind --tool=callgrind --toggle-collect="$toggle" --callgrind-out-file="$dir/cg.out" \
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --activerehashing no \
    >"$dir/valgrind.log" 2>&1 &
  local vg=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.3; done
  REDIS_URL="redis://127.0.0.1:$port/0" RUST_LOG=warn "$@" >"$dir/stdout"
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$vg" || true
  port=
  callgrind_annotate --inclusive=yes "$dir/cg.out" 2>/dev/null >"$dir/inclusive.txt"
  total=$(total_of 'PROGRAM TOTALS')
}
total_of() { awk -v f="$1" '$0 ~ f {gsub(",", "", $1); print $1; exit}' "$dir/inclusive.txt"; }

if [ "${1:-}" = "--floor" ]; then
  N=${2:-20000}
  B=${3:-64}
  count processCommand python3 scripts/drain-floor.py --jobs "$N" --batch "$B"
  cat "$dir/stdout" >&2
  full=$total
  count processCommand python3 scripts/drain-floor.py --jobs "$N" --no-drain
  cat "$dir/stdout" >&2
  setup=$total
  echo "instructions per job, the drain's commands sent plainly (batch $B): $(((full - setup) / N))"
  exit 0
fi

json=
if [ "${1:-}" = "--json" ]; then
  json=1
  shift
fi
BIN=${1:-target/release/prosaas}
N=${2:-20000}
C=${3:-64}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
count evalGenericCommand "$BIN" bench drain --jobs "$N" --concurrency "$C" ${json:+--json}
commands=$(total_of ':scriptCall ')
if [ -z "$json" ]; then
  cat "$dir/stdout" >&2
  echo "instructions per job: scripts $((total / N)), Redis commands inside them $((commands / N)), Lua side $(((total - commands) / N))"
  exit 0
fi
python3 - "$dir/stdout" "$((total / N))" "$((commands / N))" "$C" <<'PY'
import json, sys
bench = json.load(open(sys.argv[1]))
print(json.dumps({
    "concurrency": int(sys.argv[4]),
    "instructions_per_job": int(sys.argv[2]),
    "command_instructions_per_job": int(sys.argv[3]),
    "commands_per_job": {f["name"]: f["redis_commands_per_job"] for f in bench["figures"]},
}))
PY
