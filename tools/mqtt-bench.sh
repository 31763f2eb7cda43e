#!/bin/sh
# The MQTT ingest benchmark with everything it needs: installs mosquitto (the
# Debian package) when it is missing, then runs tools/mqtt-bench (about a
# minute on 2 cores): telering with 1 and with 2 ingest shards vs mosquitto vs
# bare rumqttd at full speed at QoS 0 and 1 (msg/s, server CPU per message by
# thread), then latency at 20 000 msg/s, QoS 1 (telering with the configured
# consumer fetch settings and with fetch_min = 1, vs mosquitto). Arguments go
# to the benchmark, e.g.
#   tools/mqtt-bench.sh --rounds 5 --json
#   tools/mqtt-bench.sh --latency-only --latency-rounds 4
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
