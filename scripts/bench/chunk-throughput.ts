// Chunk store throughput, worker pool versus the main thread alone: MB/s of plaintext written (hash, compress,
// encrypt, pack) and read back (decrypt, decompress), for incompressible data and for a SQLite graph store, with the
// event loop's delay p99 while it runs. Usage: node dist/scripts/bench/chunk-throughput.js [MiB per run, default 64]
import 'reflect-metadata';
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

import { ChunkStore, TenantChunkKeys } from '../../src/chunks';
import { Keyring, MasterKey } from '../../src/crypto';
import { createMetadataDataSource } from '../../src/entities/data-source';
import { FilesystemBlobStore } from '../../src/storage/filesystem-blob-store';

const MIB = 1024 * 1024;
const CHUNK = 256 * 1024;

/** A SQLite file shaped like a graph store: nodes and relationships with JSON properties, indexed. */
function sqliteLike(dir: string, bytes: number): Buffer {
  const path = join(dir, 'graph.sqlite');
  const db = new Database(path);
  db.exec(`CREATE TABLE nodes (id INTEGER PRIMARY KEY, labels TEXT, props TEXT);
    CREATE TABLE rels (id INTEGER PRIMARY KEY, type TEXT, start INTEGER, "end" INTEGER, props TEXT);
    CREATE INDEX rels_start ON rels(start); CREATE INDEX rels_end ON rels("end");`);
  const node = db.prepare('INSERT INTO nodes (labels, props) VALUES (?, ?)');
  const rel = db.prepare('INSERT INTO rels (type, start, "end", props) VALUES (?, ?, ?, ?)');
  let id = 0;
  while (id === 0 || db.prepare('PRAGMA page_count').pluck().get()! as number * 4096 < bytes) {
    db.transaction(() => {
      for (let index = 0; index < 10_000; index++, id++) {
        node.run('["Person"]', JSON.stringify({ name: `person ${id}`, age: id % 90, email: `p${id}@example.com` }));
        rel.run('KNOWS', id, (id * 7919) % (id + 1), JSON.stringify({ since: 2000 + (id % 25) }));
        rel.run('LIKES', id, (id * 104729) % (id + 1), JSON.stringify({ weight: (id % 100) / 100 }));
      }
    })();
  }
  db.close();
  return readFileSync(path);
}

async function run(name: string, data: Buffer, workers: number, dir: string): Promise<string> {
  const db = createMetadataDataSource({ dataDir: join(dir, `meta-${name}-${workers}`) });
  await db.initialize();
  await db.runMigrations();
  const blobs = new FilesystemBlobStore(join(dir, `blobs-${name}-${workers}`));
  await blobs.init();
  const store = new ChunkStore(blobs, db, new TenantChunkKeys(blobs, db, new Keyring(MasterKey.generate())), { workers });
  const tenant = '00000000-0000-4000-8000-000000000001';
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  let started = performance.now();
  const writer = store.writer(tenant);
  const refs = [];
  for (let at = 0; at < data.length; at += CHUNK) refs.push(await writer.put(data.subarray(at, at + CHUNK)));
  const { addedBytes } = await writer.finish();
  const writeSeconds = (performance.now() - started) / 1000;
  const writeP99 = delay.percentile(99) / 1e6;
  delay.reset();
  started = performance.now();
  let readBytes = 0;
  for await (const part of store.read(tenant, refs)) readBytes += (part as Buffer).length;
  const readSeconds = (performance.now() - started) / 1000;
  const readP99 = delay.percentile(99) / 1e6;
  delay.disable();
  await store.close();
  await db.destroy();
  if (readBytes !== data.length) throw new Error('read back a different length');
  const mbps = (seconds: number) => (data.length / MIB / seconds).toFixed(0).padStart(4);
  return `${name.padEnd(14)} workers=${workers}  write ${mbps(writeSeconds)} MiB/s (loop p99 ${writeP99.toFixed(1)} ms)  read ${mbps(readSeconds)} MiB/s (loop p99 ${readP99.toFixed(1)} ms)  stored ${(100 * addedBytes / data.length).toFixed(0)}%`;
}

async function main(): Promise<void> {
  const mib = Number(process.argv[2] ?? 64);
  const dir = mkdtempSync(join(tmpdir(), 'snapgraph-chunk-bench-'));
  try {
    const inputs: [string, Buffer][] = [
      ['incompressible', randomBytes(mib * MIB)],
      ['sqlite-graph', sqliteLike(dir, mib * MIB)],
    ];
    for (const [name, data] of inputs) {
      for (const workers of [0, 2]) console.log(await run(name, data, workers, dir));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
