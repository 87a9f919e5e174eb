#!/usr/bin/env bash
# Fails when the generated modules under coremachine/<api>/v1 differ from what
# protos/ generates (someone edited a .proto and forgot `make gen`, or edited
# generated code by hand).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$here/tools/gen_protos.sh" "$tmp"
stale=0
for api in "$tmp"/coremachine/*/; do
  name=$(basename "$api")
  if ! diff -r -q -x __pycache__ "$api" "$here/coremachine/$name" >/dev/null; then
    diff -r -x __pycache__ "$api" "$here/coremachine/$name" | head -40
    stale=1
  fi
done
if [ "$stale" -ne 0 ]; then
  echo "generated code is stale: run 'make gen' and commit the result." >&2
  exit 1
fi
echo "generated code is up to date."
