// The floor of a restore in bench:transfer, in its own process: the nodes of writeRandomTextArchive (the same count and
// shape, other random bytes) inserted by a bare SQLite into a fresh file, as fast as it goes: better-sqlite3 on this
// thread, one prepared statement, one transaction, no journal, then the file fsynced. No archive is read, nothing is
// decrypted, inflated, checked or indexed: what any store built on SQLite pays at least for the same rows.
//
//   node dist/scripts/bench/sqlite-floor.js <file> <nodes>   → prints the milliseconds of the insert and fsync
import { closeSync, fsyncSync, openSync, rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { randomTextProperties } from './uploaded-archives';

const [path, count] = process.argv.slice(2);
const nodes = Number(count);
// Made before the clock starts: the floor is SQLite's, not this process's JSON.stringify.
const rows = Array.from({ length: nodes }, (_, i) => [i + 1, '["Blob"]', JSON.stringify(randomTextProperties(i + 1))]);

const started = performance.now();
const db = new Database(path);
db.exec(`PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE TABLE nodes (id INTEGER PRIMARY KEY, labels TEXT NOT NULL, properties TEXT NOT NULL); BEGIN;`);
const insert = db.prepare('INSERT INTO nodes (id, labels, properties) VALUES (?, ?, ?)');
for (const row of rows) insert.run(row);
db.exec('COMMIT');
db.close();
const fd = openSync(path, 'r+');
fsyncSync(fd);
closeSync(fd);
process.stdout.write(`${(performance.now() - started).toFixed(1)}\n`);
rmSync(path, { force: true });
