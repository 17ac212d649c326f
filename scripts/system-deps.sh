#!/usr/bin/env bash
# Debian packages Tembo's tests need, installed only when missing (needs root, as on CI):
#   nodejs                      the generated payload formatter under Node
#   chromium + fonts            the real-browser dashboard tests (Playwright drives /usr/bin/chromium)
#   mosquitto                   the MQTT broker the ingest tests start on a free port
#   postgresql + postgis        the PostgreSQL/PostGIS store the bridge suite also runs on
#   portaudio19-dev             PyAudio, which edge-impulse-linux imports
set -euo pipefail
need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
[ -x /usr/bin/chromium ] || need+=(chromium)
fc-list >/dev/null 2>&1 || need+=(fontconfig fonts-dejavu-core)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || need+=(postgresql-15-postgis-3)
[ -e /usr/include/portaudio.h ] || need+=(portaudio19-dev)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o Acquire::Retries=3 update -qq
$SUDO apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian mosquitto package starts a broker on port 1883; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
