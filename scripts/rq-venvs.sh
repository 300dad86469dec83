#!/usr/bin/env bash
# Creates one virtual environment per pinned Python RQ version for the interop tests, under
# target/rq-venvs/<version> (never a system-wide install). Idempotent; safe to run in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
root=target/rq-venvs
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9
for version in 3.0.0 2.12.0 1.16.2; do
  venv="$root/$version"
  if [ -x "$venv/bin/rq" ] && "$venv/bin/python" -c "import rq, sys; sys.exit(rq.__version__ != '$version')" 2>/dev/null; then
    continue
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "rq==$version"
done
