#!/usr/bin/env bash
# Runs every `prosaas bench` scenario RUNS times (default 5) against a private redis-server on a
# free port, prints the median of each figure, the same drain by Python RQ's SimpleWorker
# (rq from scripts/rq-venvs.sh) as a ratio, and each role's idle RSS. The figures in
# docs/BENCHMARKS.md come from this script. Needs a release build: cargo build --release.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
# Which parts to run: prosaas scenarios, the RQ comparison, idle memory.
SECTIONS=${SECTIONS:-"scenarios rq rss"}
BIN=target/release/prosaas
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
bash scripts/rq-venvs.sh
RQ=target/rq-venvs/3.0.0

source "$(dirname "$0")/private-redis.sh"
export REDIS_URL="redis://127.0.0.1:$port/0" RUST_LOG=warn

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(redis-server --version | cut -d' ' -f3), $(uname -r)"
results=$(mktemp)
if [[ " $SECTIONS " == *" scenarios "* ]]; then
run() {
  for i in $(seq "$RUNS"); do
    "$BIN" bench "$@" --json >> "$results"
  done
}
run enqueue --jobs 50000 --concurrency 64
run enqueue-dedupe --jobs 30000 --concurrency 64
run drain --jobs 50000
run e2e --jobs 50000 --concurrency 64
run latency --rate 1000 --duration 10 --concurrency 64
run webhook --jobs 20000 --concurrency 64
run calls --concurrency 500 --duration 10

python3 - "$results" <<'PY'
import json, statistics, sys
figures = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    for f in r["figures"]:
        key = (r["scenario"], f["name"])
        figures.setdefault(key, []).append(f)
print(f"\n{'scenario':<15} {'figure':<62} {'median/s':>10} {'min':>9} {'max':>9} {'cmds/job':>8}  extra (medians)")
for (scenario, name), fs in figures.items():
    rates = [f["per_sec"] for f in fs]
    extra = {}
    for k in fs[0].get("extra", {}):
        extra[k] = round(statistics.median(f["extra"][k] for f in fs), 3)
    cmds = statistics.median(f["redis_commands_per_job"] for f in fs)
    print(f"{scenario:<15} {name:<62} {statistics.median(rates):>10.0f} {min(rates):>9.0f} {max(rates):>9.0f} {cmds:>8.2f}  {extra}")
PY
fi

# Python RQ on the same Redis and job count: SimpleWorker (no fork per job), JSON serializer.
if [[ " $SECTIONS " == *" rq "* ]]; then
N=${RQ_JOBS:-5000}
mod=$(mktemp -d)
printf 'def noop(**kwargs):\n    return None\n' > "$mod/rqbench_jobs.py"
echo
for i in $(seq "$RUNS"); do
  PYTHONPATH="$mod" "$RQ/bin/python" - "$REDIS_URL" "$N" <<'PY'
import sys
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
q = Queue("rqbench", connection=Redis.from_url(sys.argv[1]), serializer=JSONSerializer)
with q.connection.pipeline() as p:
    for i in range(int(sys.argv[2])):
        q.enqueue("rqbench_jobs.noop", i=i, pipeline=p)
    p.execute()
PY
  start=$(date +%s.%N)
  PYTHONPATH="$mod" "$RQ/bin/rq" worker -b -q -w rq.worker.SimpleWorker -S json -u "$REDIS_URL" rqbench
  end=$(date +%s.%N)
  echo "rq SimpleWorker drain of $N no-op jobs: $(python3 -c "print(round($N / ($end - $start)))") jobs/s"
  redis-cli -p "$port" flushdb >/dev/null
  "$BIN" bench drain --jobs "$N" --concurrency 64 --json |
    python3 -c 'import json, sys; f = json.load(sys.stdin)["figures"][0]; print("prosaas drain of %d no-op jobs (concurrency 64): %.0f jobs/s" % (f["jobs"], f["per_sec"]))'
done
rm -rf "$mod"
fi

if [[ " $SECTIONS " == *" rss "* ]]; then
echo
for role in api worker scheduler calls all; do
  INTERNAL_SECRET=s INTERNAL_API_TOKEN=t TWILIO_AUTH_TOKEN=t PUBLIC_BASE_URL=https://x PORT=0 \
    PROSAAS__HTTP__HOST=127.0.0.1 "$BIN" --role "$role" >/dev/null 2>&1 &
  pid=$!
  sleep 3
  echo "idle RSS, role $role: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status")"
  kill -TERM "$pid"; wait "$pid" || true
done
fi
