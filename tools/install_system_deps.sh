#!/usr/bin/env bash
# System packages the offline deploy checks need (Debian): docker-compose
# validates compose files without an engine; shellcheck lints provision.sh.
set -euo pipefail
need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v shellcheck >/dev/null || need+=(shellcheck)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
