#!/usr/bin/env bash
# Regenerates the Python protobuf/gRPC code from protos/ into the `coremachine`
# package under $1 (default: the repository root, so coremachine/<api>/v1/).
# The generated modules are committed; `make check-gen` fails when they are stale.
# The public contract (common, jobs) ships in the SDK's wheel, the internal
# ones (state, orchestrator) in the server's; both are generated here, once.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here}
py=${PYTHON:-$here/.venv/bin/python}
cd "$here/protos"
mapfile -t files < <(find coremachine -name '*.proto' | sort)
mapfile -t apis < <(find coremachine -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
for api in "${apis[@]}"; do rm -rf "$out/coremachine/$api"; done
mkdir -p "$out/coremachine"
"$py" -m grpc_tools.protoc -I . --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" "${files[@]}"
# Regular packages below `coremachine` (itself a namespace package shared by the
# SDK and server distributions), so tools that do not follow namespace
# packages still find the modules.
for api in "${apis[@]}"; do find "$out/coremachine/$api" -type d -exec touch {}/__init__.py \; ; done
