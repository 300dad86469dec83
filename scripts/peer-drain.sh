#!/usr/bin/env bash
# prosaas's drain against BullMQ's in one run: RUNS times (default 3) each of `prosaas bench
# drain` and scripts/peers/bullmq-drain.mjs at CONCURRENCY (default 50) with JOBS (default 20000)
# no-op jobs, alternating, on one private redis-server; prints each run and the medians.
# Needs Node.js and npm (the peer is installed into scripts/peers/node_modules on first use; CI
# does not run this). Usage: bash scripts/peer-drain.sh BIN [CONCURRENCY] [JOBS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?prosaas binary}; C=${2:-50}; N=${3:-20000}; RUNS=${4:-3}
[ -d scripts/peers/node_modules/bullmq ] || (cd scripts/peers && npm install --no-audit --no-fund >/dev/null)
source "$(dirname "$0")/private-redis.sh"
for i in $(seq "$RUNS"); do
  redis-cli -p "$port" flushall >/dev/null
  REDIS_URL="redis://127.0.0.1:$port/0" RUST_LOG=warn "$BIN" bench drain --jobs "$N" --concurrency "$C" --json \
    | python3 -c 'import json,sys; f=json.load(sys.stdin)["figures"][0]; print(json.dumps({"peer": "prosaas", "per_sec": f["per_sec"]}))' >> "$dir/runs"
  redis-cli -p "$port" flushall >/dev/null
  node scripts/peers/bullmq-drain.mjs "$port" "$N" "$C" >> "$dir/runs"
done
python3 - "$dir/runs" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault(r["peer"], []).append(r["per_sec"])
for peer, v in runs.items():
    print(f"{peer:<14} median {statistics.median(v):>9.0f} jobs/s  runs {' '.join(f'{x:.0f}' for x in v)}")
p, b = statistics.median(runs["prosaas"]), statistics.median(runs["bullmq 6.7.6"])
print(f"prosaas / bullmq: {p / b:.2f} (per pair: {' '.join(f'{x / y:.2f}' for x, y in zip(runs['prosaas'], runs['bullmq 6.7.6']))})")
PY
