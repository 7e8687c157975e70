// Drives the embedded gateway with the official Kubo RPC client (npm `kubo-rpc-client`).
//
// usage: node e2e/js/ipfs-kubo-roundtrip.mjs <gateway url> <car path> [<bad car path>]
//
// Imports the CAR with dag.import (pinning its root), exports the root back with
// dag.export into `<car path>.exported`, puts and gets one raw block, lists pins,
// and, given a bad CAR, tries to import it and reports the gateway's refusal.
// Prints one JSON object on stdout; the Rust test (e2e/it/gateway_cli.rs) compares
// the exported blocks with the ones it wrote. Exits non-zero on any unexpected error.
import { readFile, writeFile } from 'node:fs/promises'
import { create } from 'kubo-rpc-client'

const [url, carPath, badCarPath] = process.argv.slice(2)
if (!url || !carPath) {
  console.error('usage: ipfs-kubo-roundtrip.mjs <gateway url> <car path> [<bad car path>]')
  process.exit(64)
}

const client = create({ url })
const report = {}

const version = await client.version()
report.version = version.version

const imported = []
for await (const r of client.dag.import([await readFile(carPath)], { pinRoots: true })) {
  imported.push({ cid: r.root.cid.toString(), pinErrorMsg: r.root.pinErrorMsg })
}
report.imported = imported
if (imported.length !== 1) throw new Error(`expected one root, got ${imported.length}`)

const chunks = []
for await (const chunk of client.dag.export(imported[0].cid)) chunks.push(chunk)
const exported = Buffer.concat(chunks)
report.exportedPath = `${carPath}.exported`
report.exportedBytes = exported.length
await writeFile(report.exportedPath, exported)

const data = new TextEncoder().encode('sphere kubo-rpc-client block')
const blockCid = await client.block.put(data)
const back = await client.block.get(blockCid)
report.blockCid = blockCid.toString()
report.blockRoundTrip = Buffer.from(back).equals(Buffer.from(data))

report.pins = []
for await (const pin of client.pin.ls()) report.pins.push({ cid: pin.cid.toString(), type: pin.type })

if (badCarPath) {
  try {
    for await (const r of client.dag.import([await readFile(badCarPath)])) {
      report.badCarAccepted = r.root.cid.toString()
    }
  } catch (err) {
    report.badCarError = err.message
    report.badCarStatus = err.response?.status
  }
}

console.log(JSON.stringify(report))
