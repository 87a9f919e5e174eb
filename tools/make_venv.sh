#!/usr/bin/env bash
# Creates the virtualenv `make deps` installs into: $1 is the directory, $PYTHON
# the interpreter (default python3).
#
# A fresh Debian or Ubuntu python3 ships without ensurepip, so `python3 -m
# venv` fails there until the python3-venv package is installed. As root with
# apt-get, that package is installed here; otherwise the error says what to run.
set -euo pipefail
venv=${1:?usage: make_venv.sh DIR}
python=${PYTHON:-python3}

if "$python" -m venv "$venv" 2>/dev/null; then
  exit 0
fi
rm -rf "$venv"  # a venv without pip, left by the failed attempt
version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "python$version has no venv support; installing python$version-venv" >&2
  apt-get update -qq
  apt-get install -y -qq "python$version-venv" || apt-get install -y -qq python3-venv
  exec "$python" -m venv "$venv"
fi
echo "error: '$python -m venv' failed: install your system's venv package" \
  "(Debian/Ubuntu: sudo apt-get install python$version-venv) and run make again" >&2
"$python" -m venv "$venv"  # shows Python's own message
