#!/usr/bin/env node
// One kafkajs group member for ci/compat_groups.py (kafkajs consumes only
// through a group). Reports on stdout, one event per line, as the Python
// workers do:
//   ASSIGNED 0,2 | MSG P OFFSET KEY VALUE | COMMITTED 0=20,1=20 | DONE | ERROR text
// and logs on stderr.
//
//   node ci/compat_kafkajs.js --bootstrap H:P --group G --topic T --mode drain|member
//        [--expect N] [--name ID] [--session-ms 6000] [--heartbeat-ms 1000] [--deadline S]
//
// drain: read --expect messages (then 1.5 s more, to see duplicates), commit,
// read the committed offsets back, disconnect (LeaveGroup), DONE.
// member: consume until killed.
'use strict'

const { Kafka, logLevel } = require('kafkajs')

const args = {}
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
}
const topic = args.topic
const groupId = args.group
const mode = args.mode || 'member'
const expect = Number(args.expect || 0)
const sessionTimeout = Number(args['session-ms'] || 6000)
const heartbeatInterval = Number(args['heartbeat-ms'] || 1000)
const deadline = Number(args.deadline || 90)

const emit = (line) => process.stdout.write(line + '\n')
const oneLine = (s) => String(s).split(/\s+/).join(' ')
const fatal = (what) => {
  emit('ERROR ' + oneLine(what))
  // Let stdout drain, then go: disconnecting from a broken broker may hang.
  process.stdout.write('', () => process.exit(1))
  setTimeout(() => process.exit(1), 500).unref()
}

setTimeout(() => fatal(`worker deadline of ${deadline}s passed (still waiting on the client)`), deadline * 1000).unref()

const logCreator = () => ({ namespace, level, label, log }) => {
  const { message, timestamp, logger, stack, ...extra } = log
  process.stderr.write(`kafkajs ${label} ${namespace}: ${message} ${JSON.stringify(extra)}\n`)
}

const kafka = new Kafka({
  clientId: args.name || 'stormlog-compat',
  brokers: [args.bootstrap],
  logLevel: logLevel.WARN,
  logCreator,
  connectionTimeout: 5000,
  requestTimeout: 30000,
  retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 3000 },
})

async function main () {
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout,
    heartbeatInterval,
    rebalanceTimeout: 30000,
    maxWaitTimeInMs: 500,
    retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 3000 },
  })
  const { GROUP_JOIN, CRASH } = consumer.events
  consumer.on(GROUP_JOIN, (e) => {
    const parts = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b)
    emit('ASSIGNED ' + parts.join(','))
  })
  consumer.on(CRASH, (e) => {
    fatal(`consumer crashed (restart=${e.payload.restart}): ${e.payload.error && e.payload.error.name}: ` +
      `${e.payload.error && e.payload.error.message}`)
  })

  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })

  const next = {} // partition -> next offset to commit
  let got = 0
  let finishing = false

  const finish = async () => {
    try {
      await consumer.commitOffsets(Object.entries(next).map(([partition, offset]) =>
        ({ topic, partition: Number(partition), offset: String(offset) })))
      const admin = kafka.admin()
      await admin.connect()
      const fetched = await admin.fetchOffsets({ groupId, topics: [topic] })
      await admin.disconnect()
      const committed = []
      for (const t of fetched) {
        for (const p of t.partitions) {
          committed.push(`${p.partition}=${p.offset === '-1' ? 'None' : p.offset}`)
        }
      }
      committed.sort()
      emit('COMMITTED ' + committed.join(','))
      await consumer.disconnect()
      emit('DONE')
      process.stdout.write('', () => process.exit(0))
    } catch (e) {
      fatal(`commit/disconnect: ${e.name}: ${e.message}`)
    }
  }

  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      emit(`MSG ${partition} ${message.offset} ${message.key.toString()} ${message.value.toString()}`)
      next[partition] = Number(message.offset) + 1
      got += 1
      if (mode === 'member') {
        // Commit what was read at once: the check expects no re-reads across owners.
        try {
          await consumer.commitOffsets([{ topic, partition, offset: String(next[partition]) }])
          emit(`COMMITTED ${partition}=${next[partition]}`)
        } catch (e) {
          process.stderr.write(`kafkajs commit failed: ${e.name}: ${e.message}\n`)
        }
      }
      if (mode === 'drain' && got >= expect && !finishing) {
        finishing = true
        setTimeout(finish, 1500)
      }
    },
  })
}

main().catch((e) => fatal(`${e.name}: ${e.message}`))
