#!/usr/bin/env bash
# Debian packages Tembo's tests need: Node.js (the generated payload formatter) and Chromium
# (the real-browser dashboard test). Installs only what is missing; needs root, as on CI.
set -euo pipefail
need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
[ -x /usr/bin/chromium ] || need+=(chromium)
fc-list >/dev/null 2>&1 || need+=(fontconfig fonts-dejavu-core)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o Acquire::Retries=3 update -qq
$SUDO apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
