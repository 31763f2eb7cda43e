#!/usr/bin/env bash
# Installs the foreign MQTT clients of tests/mqtt_foreign.rs into
# project-local places, idempotently:
#   - Debian packages, when missing: mosquitto-clients (mosquitto_pub),
#     python3-venv, nodejs and npm;
#   - a Python venv at target/foreign-venv with paho-mqtt (from PyPI);
#   - MQTT.js (npm `mqtt`, version in tests/foreign/package.json) in
#     tests/foreign/node_modules.
# Run it from anywhere; it needs root (or sudo-less apt rights) only when a
# Debian package is missing. The tests find the clients at these paths; with
# TELERING_REQUIRE_FOREIGN=1 a missing one is a test failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/foreign-venv"

have() { command -v "$1" >/dev/null 2>&1; }
# Whether a python can make a venv with pip (Debian splits ensurepip out
# into python3-venv).
can_venv() { "$1" -c 'import venv, ensurepip' >/dev/null 2>&1; }

# Debian's python3 (the one python3-venv completes) unless PYTHON names one.
python="${PYTHON:-/usr/bin/python3}"
missing=()
have mosquitto_pub || missing+=(mosquitto-clients)
have node || missing+=(nodejs)
have npm || missing+=(npm)
if ! have "$python" || ! can_venv "$python"; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  echo "setup.sh: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! can_venv "$python"; then
  echo "setup.sh: $python cannot make a venv (python3-venv installed?)" >&2
  exit 1
fi

# ---- paho-mqtt in target/foreign-venv
if ! "$venv/bin/python" -c 'import paho.mqtt' >/dev/null 2>&1; then
  echo "setup.sh: python venv $venv with paho-mqtt"
  rm -rf "$venv"
  mkdir -p "$root/target"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2.1,<3'
fi
"$venv/bin/python" -c 'import importlib.metadata as m; print("setup.sh: paho-mqtt", m.version("paho-mqtt"))'

# ---- MQTT.js in tests/foreign/node_modules (no lock file is written: the
# direct dependency is pinned exactly in package.json).
want="$(node -p 'require(process.argv[1]).dependencies.mqtt' "$here/package.json")"
got="$(node -p 'try { require(process.argv[1]).version } catch (e) { "" }' \
  "$here/node_modules/mqtt/package.json" 2>/dev/null || true)"
if [ "$got" != "$want" ]; then
  echo "setup.sh: npm install (mqtt $want) in $here"
  (cd "$here" && npm install --no-package-lock --no-audit --no-fund --loglevel=error)
fi
echo "setup.sh: MQTT.js $(node -p 'require(process.argv[1]).version' "$here/node_modules/mqtt/package.json") (node $(node --version))"
echo "setup.sh: $(mosquitto_pub --help 2>&1 | sed -n 2p)"
