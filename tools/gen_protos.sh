#!/usr/bin/env bash
# Regenerates the Python protobuf/gRPC code from protos/ into $1 (default gen/).
# The generated tree is committed; `make check-gen` fails when it is stale.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/gen}
py=${PYTHON:-$here/.venv/bin/python}
rm -rf "$out/coremachine"
mkdir -p "$out"
cd "$here/protos"
mapfile -t files < <(find coremachine -name '*.proto' | sort)
"$py" -m grpc_tools.protoc -I . --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" "${files[@]}"
# Packages, so that tools which do not understand namespace packages still find the modules.
find "$out/coremachine" -type d -exec touch {}/__init__.py \;
