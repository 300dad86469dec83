#!/usr/bin/env bash
# prosaas's enqueue against apalis-redis 1.0's in one run: RUNS times (default 3) each of
# `prosaas bench enqueue --concurrency 1` (single calls, one in flight; then batches of 1,000, four
# in flight) and scripts/peers/apalis-enqueue (push, one in flight; push_bulk of 1,000, four in
# flight), alternating, on one private redis-server, each run preceded by `redis-benchmark SET -P1`
# (one client, one command in flight: the loopback round trip this hour; prosaas's bench adds the
# same through its own client, a `PING` with one in flight). Prints each run and the
# medians. Builds the peer on first use (cargo, crates.io; CI does not run this).
# Usage: bash scripts/peer-enqueue.sh BIN [JOBS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?prosaas binary}; N=${2:-20000}; RUNS=${3:-3}
PEER=scripts/peers/apalis-enqueue/target/release/apalis-enqueue
[ -x "$PEER" ] || cargo build --release --quiet --manifest-path scripts/peers/apalis-enqueue/Cargo.toml
source "$(dirname "$0")/private-redis.sh"
for i in $(seq "$RUNS"); do
  redis-benchmark -p "$port" -t set -n "$N" -c 1 -P 1 --csv 2>/dev/null \
    | python3 -c 'import csv,json,sys; r=list(csv.reader(sys.stdin))[1]; print(json.dumps({"peer": "redis-benchmark SET -P1", "figure": "one in flight", "per_sec": float(r[1])}))' >> "$dir/runs"
  redis-cli -p "$port" flushall >/dev/null
  REDIS_URL="redis://127.0.0.1:$port/0" RUST_LOG=warn "$BIN" bench enqueue --jobs "$N" --concurrency 1 --json \
    | python3 -c '
import json, sys
names = {"single": "one in flight", "enqueue_many": "batches of 1000, 4 in flight", "PING": "PING, one in flight"}
for f in json.load(sys.stdin)["figures"]:
    name = names[f["name"].split(",")[0].split(" ")[0]]
    print(json.dumps({"peer": "prosaas", "figure": name, "per_sec": f["per_sec"], "client_cpu_us_per_job": f["extra"]["bench_cpu_us_per_job"], "redis_cpu_us_per_job": f["extra"]["redis_cpu_us_per_job"], "commands_per_job": f["redis_commands_per_job"]}))' >> "$dir/runs"
  redis-cli -p "$port" flushall >/dev/null
  "$PEER" "$port" "$N" >> "$dir/runs"
done
python3 - "$dir/runs" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault((r["figure"], r["peer"]), []).append(r)
med = lambda rs, k: statistics.median(r[k] for r in rs) if all(k in r for r in rs) else float("nan")
for (figure, peer), rs in sorted(runs.items()):
    each = " ".join("%.0f" % r["per_sec"] for r in rs)
    print(f"{figure:<30} {peer:<24} median {med(rs, 'per_sec'):>9.0f} jobs/s  runs {each}"
          f"  client {med(rs, 'client_cpu_us_per_job'):.1f} us, redis {med(rs, 'redis_cpu_us_per_job'):.1f} us, {med(rs, 'commands_per_job'):.2f} cmds per job")
for figure in ["one in flight", "batches of 1000, 4 in flight"]:
    p, a = runs[(figure, "prosaas")], runs[(figure, "apalis-redis 1.0.0")]
    pairs = " ".join(f"{x['per_sec'] / y['per_sec']:.2f}" for x, y in zip(p, a))
    print(f"{figure}: prosaas / apalis {med(p, 'per_sec') / med(a, 'per_sec'):.2f} (per pair: {pairs})")
rt = runs[("one in flight", "redis-benchmark SET -P1")]
one = med(runs[("one in flight", "prosaas")], "per_sec")
print(f"one in flight: prosaas / one round trip: {one / med(rt, 'per_sec'):.2f} of redis-benchmark's, "
      f"{one / med(runs[('PING, one in flight', 'prosaas')], 'per_sec'):.2f} of a PING through prosaas's client")
PY
