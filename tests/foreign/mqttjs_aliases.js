#!/usr/bin/env node
// Publishes COUNT messages at QoS 1 over MQTT 5 with MQTT.js (npm `mqtt`),
// using topic aliases explicitly: the first message to a topic carries the
// full topic name and `properties.topicAlias`; every later one an EMPTY topic
// and only the alias, so the server must resolve the alias to ingest it.
// (MQTT.js's autoUseTopicAlias/autoAssignTopicAlias are left off on purpose.)
//
// Usage: node mqttjs_aliases.js HOST PORT COUNT CLIENT_ID
//
// Message i (0-based): even i -> alias 1 = `sensors/<client id>/temperature`,
// bare number payload; odd i -> alias 2 = `sensors/<client id>/reading`,
// {"temperature": .., "humidity": ..} (two engine records). If the server's
// CONNACK allows only one alias, every message uses alias 1 (temperature).
//
// Prints one JSON line on stdout:
//   {"sent", "acked", "temperature_msgs", "reading_msgs", "alias_only",
//    "full_topic", "max_inflight", "connack": {"topicAliasMaximum",
//    "receiveMaximum", "maximumPacketSize"}}
// where "alias_only"/"full_topic" count the PUBLISH packets MQTT.js put on
// the wire with an empty topic + alias / with the topic name, and
// "max_inflight" the most PUBLISHes unacknowledged at once (at most the
// CONNACK's receiveMaximum, 65535 when absent); and exits 0
// only if every PUBLISH got a successful PUBACK before the deadline.
'use strict'

const mqtt = require('mqtt')

const DEADLINE_MS = 30000

function main () {
  const args = process.argv.slice(2)
  if (args.length !== 4) {
    process.stderr.write('usage: node mqttjs_aliases.js HOST PORT COUNT CLIENT_ID\n')
    process.exit(2)
  }
  const [host, portText, countText, clientId] = args
  const port = Number(portText)
  const count = Number(countText)
  if (!Number.isInteger(port) || !Number.isInteger(count) || count < 0) {
    process.stderr.write('PORT and COUNT must be integers\n')
    process.exit(2)
  }
  if (Buffer.byteLength(clientId) < 1 || Buffer.byteLength(clientId) > 16) {
    process.stderr.write(`the client id is the device id: 1..16 bytes, got ${clientId}\n`)
    process.exit(2)
  }

  const result = {
    sent: 0,
    acked: 0,
    temperature_msgs: 0,
    reading_msgs: 0,
    alias_only: 0,
    full_topic: 0,
    connack: null
  }
  let finished = false
  const finish = (error) => {
    if (finished) return
    finished = true
    clearTimeout(timer)
    if (error) result.error = String(error && error.message ? error.message : error)
    process.stdout.write(JSON.stringify(result) + '\n')
    const code = error ? 1 : 0
    // end() sends DISCONNECT once everything in flight is done; force it on
    // an error so a broken connection cannot keep the process alive.
    client.end(Boolean(error), {}, () => process.exit(code))
    setTimeout(() => process.exit(code), 2000).unref()
  }
  const timer = setTimeout(
    () => finish(new Error(`timed out after ${DEADLINE_MS} ms: ${result.acked} of ${count} acknowledged`)),
    DEADLINE_MS
  )

  const client = mqtt.connect({
    host,
    port,
    protocol: 'mqtt',
    protocolVersion: 5,
    clientId,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 0, // one connection: a resend would hide a lost message
    connectTimeout: 10000
  })

  client.on('packetsend', (packet) => {
    if (packet.cmd !== 'publish') return
    const alias = packet.properties && packet.properties.topicAlias
    if (packet.topic.length === 0 && alias) result.alias_only += 1
    else result.full_topic += 1
  })
  client.on('error', (e) => finish(e))
  client.on('close', () => {
    if (finished) return
    if (result.connack === null) finish(new Error('connection closed before a CONNACK'))
    else finish(new Error(`connection closed with ${result.acked} of ${count} acknowledged`))
  })

  client.once('connect', (connack) => {
    const p = connack.properties || {}
    result.connack = {
      topicAliasMaximum: p.topicAliasMaximum === undefined ? null : p.topicAliasMaximum,
      receiveMaximum: p.receiveMaximum === undefined ? null : p.receiveMaximum,
      maximumPacketSize: p.maximumPacketSize === undefined ? null : p.maximumPacketSize
    }
    const aliases = p.topicAliasMaximum || 0
    if (aliases < 1) {
      finish(new Error(`the server's CONNACK allows no topic alias (topicAliasMaximum ${p.topicAliasMaximum})`))
      return
    }
    const topics = [`sensors/${clientId}/temperature`]
    if (aliases >= 2) topics.push(`sensors/${clientId}/reading`)
    // MQTT.js does not apply the server's Receive Maximum (65535 when
    // absent) to what it sends: keep at most that many PUBLISHes
    // unacknowledged.
    const windowSize = Math.max(1, p.receiveMaximum || 65535)
    const registered = new Set()
    let next = 0
    let inflight = 0
    result.max_inflight = 0
    const pump = () => {
      while (!finished && next < count && inflight < windowSize) {
        const i = next++
        const which = i % topics.length // 0: alias 1 (temperature), 1: alias 2 (reading)
        const alias = which + 1
        let payload
        if (which === 0) {
          payload = (-20 + i * 0.25).toString()
          result.temperature_msgs += 1
        } else {
          payload = JSON.stringify({ temperature: -20 + i * 0.25, humidity: i % 101 })
          result.reading_msgs += 1
        }
        const topic = registered.has(alias) ? '' : topics[which]
        registered.add(alias)
        result.sent += 1
        inflight += 1
        result.max_inflight = Math.max(result.max_inflight, inflight)
        client.publish(topic, payload, { qos: 1, properties: { topicAlias: alias } }, (err) => {
          if (err) {
            finish(new Error(`publish ${i} (alias ${alias}): ${err.message}`))
            return
          }
          // MQTT.js reports a PUBACK reason code >= 0x80 as err; anything
          // else is a success.
          inflight -= 1
          result.acked += 1
          if (result.acked === count) finish(null)
          else pump()
        })
      }
    }
    if (count === 0) finish(null)
    else pump()
  })
}

main()
