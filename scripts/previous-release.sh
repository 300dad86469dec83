#!/usr/bin/env bash
# Builds the newest release CHANGELOG.md names (`## [X.Y.Z] - date - commit <sha>`), the baseline
# of the upgrade test (tests/it/upgrade.rs), from this repository's own history, into
# target/compat/prosaas-previous (with target/compat/previous.txt: "<version> <sha>"). A build
# already there for that commit is kept: .ci/run calls this on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
line=$(grep -m1 -E '^## \[[0-9]+\.[0-9]+\.[0-9]+\] - [0-9]{4}-[0-9]{2}-[0-9]{2} - commit [0-9a-f]{7,40}$' CHANGELOG.md) \
  || { echo "CHANGELOG.md names no release commit" >&2; exit 1; }
version=$(sed -E 's/^## \[([^]]+)\].*/\1/' <<<"$line")
commit=$(sed -E 's/.* commit ([0-9a-f]+)$/\1/' <<<"$line")
out=target/compat
mkdir -p "$out"
if [ -x "$out/prosaas-previous" ] && [ "$(cat "$out/previous.txt" 2>/dev/null)" = "$version $commit" ]; then
  echo "previous release $version ($commit): already built"
  exit 0
fi
# A shallow clone may lack the commit: fetch the history it needs.
git cat-file -e "$commit^{commit}" 2>/dev/null || git fetch --quiet --unshallow 2>/dev/null || git fetch --quiet origin "$commit"
src="$out/src-$commit"
rm -rf "$src"
mkdir -p "$src"
git archive "$commit" | tar -x -C "$src"
echo "building previous release $version ($commit)"
# Into this checkout's target directory: the dependencies both builds share are compiled once.
# The old binary lands in target/debug/prosaas, which the current build replaces afterwards.
(cd "$src" && CARGO_TARGET_DIR="$root/target" cargo build --locked --bin prosaas --quiet)
cp target/debug/prosaas "$out/prosaas-previous"
echo "$version $commit" > "$out/previous.txt"
rm -rf "$src"
"$out/prosaas-previous" --version
