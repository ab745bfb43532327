#!/usr/bin/env node
// An idempotent kafkajs producer for ci/compat_idempotence.py: sends the
// keyed records `k<i % keys>` = `k<i % keys>:<i>` for i < --count (acks=all,
// idempotent: true), 100 per send, and prints `ACK VALUE` for each record of
// a send that resolved, then DONE; `ERROR text` on failure.
//
//   node ci/compat_kafkajs_idempotent.js --bootstrap H:P --topic T --count N --keys K
'use strict'

const { Kafka, logLevel } = require('kafkajs')

const args = {}
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
}
const count = Number(args.count || 1000)
const keys = Number(args.keys || 12)
const emit = (line) => process.stdout.write(line + '\n')
setTimeout(() => { emit('ERROR deadline passed'); process.exit(1) }, 90000).unref()

async function main () {
  const kafka = new Kafka({ clientId: 'stormlog-idem', brokers: [args.bootstrap], logLevel: logLevel.WARN })
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const chunk = 100
  for (let start = 0; start < count; start += chunk) {
    const messages = []
    for (let i = start; i < Math.min(count, start + chunk); i++) {
      const key = `k${i % keys}`
      messages.push({ key, value: `${key}:${i}` })
    }
    // Resolved: every record of the send is acknowledged.
    await producer.send({ topic: args.topic, acks: -1, messages })
    for (const m of messages) emit(`ACK ${m.value}`)
  }
  await producer.disconnect()
  emit('DONE')
}

main().catch((e) => { emit(`ERROR ${e.name}: ${e.message}`); process.exit(1) })
