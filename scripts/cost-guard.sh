#!/usr/bin/env bash
# CI's guard on what a drained job costs Redis, in counts that do not depend on how busy the
# machine is: the instructions Redis runs inside scripts per job (callgrind, as
# scripts/script-cost.sh counts them) and commands per job, for `prosaas bench drain` (a plain
# and a fair drain) at concurrency 1 and 64, checked against the budget in
# .ci/cost-budget.json. A figure above its budget by more than the tolerance fails: a change
# that costs more must raise the budget on purpose (--update), in the same commit, saying why.
# A figure well below its budget is reported, so that the gain can be locked in.
#
#   bash scripts/cost-guard.sh [BIN]            check (default BIN: target/debug/prosaas)
#   bash scripts/cost-guard.sh --update [BIN]   measure and write the budget's figures
#
# The client's build mode hardly matters (Redis under valgrind is the slow side), so the budget
# is measured and checked with the build CI has at hand, the debug one `cargo test` made. At
# concurrency 64 the jobs per script call depend on timing, and timing can only make a call
# carry fewer jobs (each job then costlier), never more: each such figure is the least of its
# runs, and a figure over budget is measured again (up to two more rounds of its runs) before it
# fails, since a slow spell on a shared machine can only have raised it.
set -euo pipefail
cd "$(dirname "$0")/.."
update=
if [ "${1:-}" = "--update" ]; then
  update=1
  shift
fi
BIN=${1:-target/debug/prosaas}
[ -x "$BIN" ] || { echo "cost guard: no binary at $BIN (cargo build first)" >&2; exit 1; }
exec python3 - "$BIN" "${update:-}" <<'PY'
import json, subprocess, sys

BUDGET = ".ci/cost-budget.json"
bin_, update = sys.argv[1], sys.argv[2]
budget = json.load(open(BUDGET))

figures = {}


def measure(run):
    c, jobs, repeat = run["concurrency"], run["jobs"], run["repeat"]
    for _ in range(repeat):
        out = subprocess.run(
            ["bash", "scripts/script-cost.sh", "--json", bin_, str(jobs), str(c)],
            check=True, capture_output=True, text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        seen = {f"c={c} instructions per job": r["instructions_per_job"]}
        for name, cmds in r["commands_per_job"].items():
            seen[f"c={c} commands per job: {name}"] = cmds
        for k, v in seen.items():
            figures[k] = min(v, figures.get(k, v))


def over(name):
    limit = budget["figures"].get(name)
    tol = budget["tolerance"]["instructions" if "instructions" in name else "commands"]
    return limit is not None and name in figures and figures[name] / limit > 1 + tol


for run in budget["runs"]:
    measure(run)
    # Only a run whose jobs per call depend on timing (several in flight) is measured again.
    for _ in range(2 if run["repeat"] > 1 and not update else 0):
        prefix = f"c={run['concurrency']} "
        again = [n for n in figures if n.startswith(prefix) and over(n)]
        if not again:
            break
        print(f"cost guard: {', '.join(again)} over budget; measuring c={run['concurrency']} again", file=sys.stderr)
        measure(run)

if update:
    budget["figures"] = figures
    with open(BUDGET, "w") as f:
        json.dump(budget, f, indent=2)
        f.write("\n")
    for k, v in figures.items():
        print(f"budget {k}: {v}")
    sys.exit(0)

failed = []
for name, limit in budget["figures"].items():
    got = figures.get(name)
    if got is None:
        failed.append(f"{name}: not measured (budget {limit})")
        continue
    tol = budget["tolerance"]["instructions" if "instructions" in name else "commands"]
    ratio = got / limit
    verdict = "ok"
    if ratio > 1 + tol:
        verdict = "OVER BUDGET"
        failed.append(f"{name}: {got}, budget {limit} ({ratio:.3f}x, tolerance {tol:.0%})")
    elif ratio < 1 - 2 * tol:
        verdict = "well under budget: lower it with --update to keep the gain"
    print(f"cost guard: {name}: {got} (budget {limit}, {ratio:.3f}x) {verdict}")
if failed:
    print("cost guard failed: " + "; ".join(failed), file=sys.stderr)
    print(f"if the cost is intended, run `bash scripts/cost-guard.sh --update` and commit {BUDGET} saying why", file=sys.stderr)
    sys.exit(1)
PY
