#!/bin/sh
# The MQTT ingest benchmark with everything it needs: installs mosquitto (the
# Debian package) when it is missing, then runs telering vs mosquitto vs bare
# rumqttd (tools/mqtt-bench). Arguments go to the benchmark, e.g.
#   tools/mqtt-bench.sh --rounds 3 --json
set -eu
cd "$(dirname "$0")/.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "mqtt-bench.sh: installing mosquitto (apt-get) ..." >&2
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
  else
    echo "mqtt-bench.sh: mosquitto is not installed and there is no apt-get;" \
      "install mosquitto 2.x and run again" >&2
    exit 1
  fi
fi

exec cargo run --release -p mqtt-bench -- --require-mosquitto "$@"
