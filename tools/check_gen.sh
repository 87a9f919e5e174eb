#!/usr/bin/env bash
# Fails when gen/ differs from what protos/ generates (someone edited a .proto
# and forgot `make gen`, or edited generated code by hand).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$here/tools/gen_protos.sh" "$tmp"
if ! diff -r -q -x __pycache__ "$tmp/coremachine" "$here/gen/coremachine" >/dev/null; then
  diff -r -x __pycache__ "$tmp/coremachine" "$here/gen/coremachine" | head -40
  echo "gen/ is stale: run 'make gen' and commit the result." >&2
  exit 1
fi
echo "gen/ is up to date."
