#!/usr/bin/env bash
# Compares two release builds on this machine: `prosaas bench drain` (c=64) and `bench latency`
# (1,000 jobs/s), old and new alternating RUNS times (default 5) against one private
# redis-server, so a slow hour slows both alike. Prints each run and the medians with the
# new/old ratio. Usage: bash scripts/ab.sh OLD_BINARY NEW_BINARY [RUNS]
# SCENARIOS="drain" (or "latency") runs one of the two.
set -euo pipefail
OLD=${1:?old binary}; NEW=${2:?new binary}; RUNS=${3:-5}
SCENARIOS=${SCENARIOS:-"drain latency"}
for b in "$OLD" "$NEW"; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 1; }; done
source "$(dirname "$0")/private-redis.sh"
export REDIS_URL="redis://127.0.0.1:$port/0" RUST_LOG=warn
results="$dir/results"
for i in $(seq "$RUNS"); do
  for side in old new; do
    bin=$OLD; [ "$side" = new ] && bin=$NEW
    if [[ " $SCENARIOS " == *" drain "* ]]; then
      echo "$side drain $("$bin" bench drain --jobs 50000 --concurrency 64 --json)" >> "$results"
    fi
    if [[ " $SCENARIOS " == *" latency "* ]]; then
      echo "$side latency $("$bin" bench latency --rate 1000 --duration 10 --concurrency 64 --json)" >> "$results"
    fi
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    side, scenario, raw = line.split(" ", 2)
    for f in json.loads(raw)["figures"]:
        fig = {"per_sec": f["per_sec"], "cmds/job": f["redis_commands_per_job"], **f.get("extra", {})}
        for k, v in fig.items():
            if isinstance(v, (int, float)):
                rows.setdefault((scenario, f["name"], k), {"old": [], "new": []})[side].append(v)
print(f"{'scenario':<8} {'figure':<48} {'value':<26} {'old median':>11} {'new median':>11} {'new/old':>8}  runs old | new")
for (scenario, name, k), s in rows.items():
    o, n = statistics.median(s["old"]), statistics.median(s["new"])
    ratio = f"{n / o:.3f}" if o else "-"
    fmt = lambda xs: " ".join(f"{x:.4g}" for x in xs)
    print(f"{scenario:<8} {name[:48]:<48} {k[:26]:<26} {o:>11.4g} {n:>11.4g} {ratio:>8}  {fmt(s['old'])} | {fmt(s['new'])}")
PY
