#!/usr/bin/env python3
"""Publishes COUNT messages at QoS 1 and COUNT at QoS 2 with Eclipse paho-mqtt
(PyPI `paho-mqtt`, 2.x) and waits until the broker acknowledged every one
(PUBACK for QoS 1, PUBREC + PUBCOMP for QoS 2).

Usage: paho_publish.py HOST PORT COUNT CLIENT_ID VERSION   (VERSION: 3.1.1 or 5)

Message i (0-based) of QoS q goes to `sensors/<client id>-q<q>/temperature`
with the bare number payload `-20 + i * 0.25` (valid for telering's scheme;
the device id is at most 16 bytes, checked below).

Prints one JSON line on stdout:
  {"sent": 2*COUNT, "acked_qos1": .., "acked_qos2": .., "version": "..",
   "max_inflight": .. (most PUBLISHes unacknowledged at once),
   "receive_maximum": .. (MQTT 5 only: the CONNACK's, null when absent)}
Over MQTT 5 at most the server's Receive Maximum (65535 when absent) are
unacknowledged at once; over MQTT 3.1.1 at most WINDOW_V311.
and exits 0 only if every publish was acknowledged before the deadline; on a
connection refusal, an error or a timeout it still prints the JSON line (with
an "error" field) and exits non-zero.
"""

import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

DEADLINE_S = 30.0
# PUBLISHes unacknowledged at once over MQTT 3.1.1 (no flow control in the
# protocol; paho's own default). MQTT 5 uses the server's Receive Maximum.
WINDOW_V311 = 20


def main() -> int:
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, count, client_id, version = sys.argv[1:]
    port, count = int(port), int(count)
    protocol = {"3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}.get(version)
    if protocol is None:
        print(f"unknown protocol version {version!r}: use 3.1.1 or 5", file=sys.stderr)
        return 2
    for q in (1, 2):
        device = f"{client_id}-q{q}"
        if not 1 <= len(device.encode()) <= 16:
            print(f"device id {device!r} must be 1..16 bytes", file=sys.stderr)
            return 2

    result = {"sent": 0, "acked_qos1": 0, "acked_qos2": 0, "version": version, "max_inflight": 0}
    lock = threading.Lock()
    connected = threading.Event()
    all_acked = threading.Event()
    # mid -> reason code of every acknowledged publish (from paho's thread);
    # mids are not reused below 65535 publishes, so a repeat is an error.
    acked = {}
    errors = []

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        **({} if protocol == mqtt.MQTTv5 else {"clean_session": True}),
    )
    # paho's own in-flight limit is off (0): the loop below keeps the window,
    # because paho does not apply the server's Receive Maximum by itself.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    # Publishes handed to paho; in flight = published - len(acked).
    progress = threading.Condition(lock)
    published = 0
    window = WINDOW_V311

    def on_connect(_c, _u, _flags, reason_code, props):
        nonlocal window
        with lock:
            if reason_code.is_failure:
                errors.append(f"CONNACK refused: {reason_code}")
            if protocol == mqtt.MQTTv5:
                # The server's Receive Maximum, 65535 when absent.
                receive_maximum = getattr(props, "ReceiveMaximum", None)
                result["receive_maximum"] = receive_maximum
                window = receive_maximum or 65535
        connected.set()

    def on_disconnect(_c, _u, _flags, reason_code, _props):
        if not all_acked.is_set():
            with lock:
                errors.append(f"disconnected before every ack: {reason_code}")
                progress.notify_all()
            connected.set()
            all_acked.set()

    def on_publish(_c, _u, mid, reason_code, _props):
        with lock:
            if mid in acked:
                errors.append(f"second acknowledgement of mid {mid}")
                return
            acked[mid] = reason_code
            progress.notify_all()
            if len(acked) == 2 * count:
                all_acked.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish

    deadline = time.monotonic() + DEADLINE_S
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        result["error"] = f"connect: {e}"
        print(json.dumps(result))
        return 1
    client.loop_start()
    # mid -> qos of every publish handed to paho.
    sent = {}
    infos = []
    try:
        if not connected.wait(max(0.0, deadline - time.monotonic())):
            errors.append("no CONNACK before the deadline")
        elif not errors:
            for q in (1, 2):
                for i in range(count):
                    with lock:
                        while published - len(acked) >= window and not errors:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                errors.append("timed out waiting for the in-flight window")
                                break
                            progress.wait(left)
                        if errors:
                            break
                        published += 1
                        result["max_inflight"] = max(
                            result["max_inflight"], published - len(acked)
                        )
                    topic = f"sensors/{client_id}-q{q}/temperature"
                    info = client.publish(topic, f"{-20 + i * 0.25}", qos=q)
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        errors.append(f"publish {topic}: {mqtt.error_string(info.rc)}")
                        break
                    sent[info.mid] = q
                    infos.append(info)
                if errors:
                    break
            if count == 0:
                all_acked.set()
            if not errors and not all_acked.wait(max(0.0, deadline - time.monotonic())):
                with lock:
                    errors.append(
                        f"timed out after {DEADLINE_S} s with "
                        f"{len(sent) - len(acked)} of {len(sent)} publishes unacknowledged"
                    )
    finally:
        all_acked.set()  # a DISCONNECT from here on is ours
        client.disconnect()
        client.loop_stop()

    with lock:
        result["sent"] = len(sent)
        for mid, reason_code in acked.items():
            q = sent.get(mid)
            if q is None:
                errors.append(f"acknowledgement of unknown mid {mid}")
            elif reason_code.is_failure:
                errors.append(f"publish mid {mid} refused: {reason_code}")
            else:
                result[f"acked_qos{q}"] += 1
        # Cross-check with paho's own view of each message.
        unpublished = sum(1 for info in infos if not info.is_published())
        if unpublished and not errors:
            errors.append(f"{unpublished} publishes not marked published by paho")

    if errors:
        result["error"] = "; ".join(errors)
    print(json.dumps(result))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
