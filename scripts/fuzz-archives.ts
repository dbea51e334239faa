// Fuzzes restore-from-file with mutated archives against a real server process (issue 10, point 4): bit flips,
// truncations, reordered frames, and edited headers and tuples whose checksums are sealed again so that they reach
// record validation. Each archive goes through the GraphQL multipart upload or the tus endpoint, in turn. After an
// accepted restore the instance must hold exactly the mutated archive's graph (read back through the API, and from
// time to time through a snapshot's export); after a refusal it must be unchanged.
//
//   npm run fuzz:archives -- [--count 2000] [--seed 1] [--timeout-ms 30000]
//
// Prints counts: refused by code, accepted-and-identical, accepted-but-different, crashes, hangs. Exits non-zero
// when any of the last three is not 0.
import assert from 'node:assert/strict';
import {
  archiveOf,
  craftArchive,
  createInstance,
  createNodes,
  createRelationships,
  type Graph,
  graphOf,
  graphOfArchive,
  instanceState,
  operationById,
  refusalCode,
  releaseAll,
  sealArchive,
  startServer,
  statsOfLines,
  storeGenerations,
  takeSnapshot,
  type TestServer,
  tusUpload,
  uploadBlobs,
  unsealArchive,
  type ArchiveParts,
  RESTORE_FROM_FILE,
} from '../test/support';

const flag = (name: string, fallback: number) => {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
};
const COUNT = flag('count', 2000);
const SEED = flag('seed', 1);
const TIMEOUT_MS = flag('timeout-ms', 30_000);

/** mulberry32: a small seeded generator, so a run can be repeated. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)],
    chance: (p: number) => next() < p,
  };
}
type Random = ReturnType<typeof generator>;

// ---------------------------------------------------------------------------------------------
// Mutations. Each returns the mutated bytes and a name (for the report and for reproducing a case).

const STRANGE_IDS = ['01', '1e3', ' 7', '1.0', '0', '-5', String(2 ** 53 + 1), '9007199254740992', '9007199254740991', '', '+3', '0x1F', '３'];
const STRANGE_VALUES: unknown[] = [null, '', [], {}, 'x', 0, 1, -1, true, ['A', 'A'], [null], [''], ['\ud800'], 7, '7'];
const STRANGE_JSON = ['1e400', '-0', '-0.0', '1.0', '1E-400', '12345678901234567890', '"\\ud800"', '"\\u0000"', '"a\\/b"', '[[[[[]]]]]', '{"a":1,"a":2}', 'NaN', 'Infinity', "'x'", '0x10', '.5', '1.', '"\t"'];

function mutate(base: Buffer, random: Random): { name: string; bytes: Buffer } {
  const parts = unsealArchive(base);
  const kinds: [string, number, () => Buffer][] = [
    ['bit flips', 3, () => flipBits(base, random)],
    ['truncation', 2, () => base.subarray(0, random.int(base.length))],
    ['appended bytes', 0.5, () => Buffer.concat([base, Buffer.from([random.int(256), random.int(256)])])],
    ['frames reordered', 1, () => reorderFramesRaw(base, random)],
    ['frames reordered, sealed', 1, () => sealArchive(reorderFrames(parts, random))],
    ['header edited, sealed', 2, () => sealArchive(editHeader(parts, random))],
    ['tuple edited, sealed', 6, () => sealArchive(editTuples(parts, random))],
    ['frame text edited, sealed', 2, () => sealArchive(editFrameText(parts, random))],
    ['oversized body, header claiming 0 bytes', 0.3, () => oversized(random)],
  ];
  const total = kinds.reduce((sum, [, weight]) => sum + weight, 0);
  let roll = random.next() * total;
  for (const [name, weight, make] of kinds) {
    roll -= weight;
    if (roll <= 0) return { name, bytes: make() };
  }
  return { name: 'unchanged', bytes: base };
}

function flipBits(bytes: Buffer, random: Random): Buffer {
  const copy = Buffer.from(bytes);
  for (let i = 1 + random.int(3); i > 0; i--) copy[random.int(copy.length)] ^= 1 << random.int(8);
  return copy;
}

/** Byte ranges of the data frames of an intact archive. */
function frameRanges(bytes: Buffer): [number, number][] {
  const ranges: [number, number][] = [];
  let offset = 14 + bytes.readUInt32BE(10) + 4;
  while (bytes[offset] === 0x44) {
    const end = offset + 13 + bytes.readUInt32BE(offset + 5);
    ranges.push([offset, end]);
    offset = end;
  }
  return ranges;
}

function reorderFramesRaw(bytes: Buffer, random: Random): Buffer {
  const ranges = frameRanges(bytes);
  if (ranges.length < 2) return flipBits(bytes, random);
  const [i, j] = twoDistinct(ranges.length, random);
  const pieces = ranges.map(([start, end]) => bytes.subarray(start, end));
  [pieces[i], pieces[j]] = [pieces[j], pieces[i]];
  return Buffer.concat([bytes.subarray(0, ranges[0][0]), ...pieces, bytes.subarray(ranges[ranges.length - 1][1])]);
}

function reorderFrames(parts: ArchiveParts, random: Random): ArchiveParts {
  const frames = [...parts.frames];
  if (frames.length >= 2) {
    const [i, j] = twoDistinct(frames.length, random);
    [frames[i], frames[j]] = [frames[j], frames[i]];
  }
  return { ...parts, frames };
}

function twoDistinct(n: number, random: Random): [number, number] {
  const i = random.int(n);
  return [i, (i + 1 + random.int(n - 1)) % n];
}

function editHeader(parts: ArchiveParts, random: Random): ArchiveParts {
  const header = JSON.parse(parts.headerJson);
  const stats = header.stats;
  const edits: (() => void)[] = [
    () => (stats.nodeCount += random.pick([-1, 1, 1000])),
    () => (stats.relationshipCount += random.pick([-1, 1])),
    () => (stats.storeSizeBytes = random.pick([0, 1, 2 ** 40, -1, 1.5])),
    () => stats.labels.pop(),
    () => stats.labels.push({ name: random.pick(['Ghost', '', 'Person']), count: random.int(3) }),
    () => stats.labels.length > 0 && (stats.labels[0].count += random.pick([-1, 1])),
    () => stats.relationshipTypes.reverse(),
    () => stats.relationshipTypes.length > 0 && (stats.relationshipTypes[0].name = random.pick(['', 'OTHER', null])),
    () => (header.engineVersion = random.pick(['V4', 'V6', null])),
    () => (header.capturedAt = random.pick(['yesterday', '', 5])),
    () => (header.sourceInstanceName = random.pick(['x'.repeat(10_000), '\ud800', 7])),
    () => delete header.stats,
  ];
  random.pick(edits)();
  const headerJson = random.chance(0.05) ? parts.headerJson.slice(0, -1) : JSON.stringify(header);
  return { ...parts, headerJson, version: random.chance(0.05) ? random.pick([0, 2]) : parts.version };
}

/** Edits one to three tuples; half the time the header's stats follow, so that only record validation is left. */
function editTuples(parts: ArchiveParts, random: Random): ArchiveParts {
  const lines = parts.frames.join('').split('\n').filter((line) => line.length > 0);
  for (let n = 1 + random.int(3); n > 0; n--) editTuple(lines, random);
  return craftArchiveParts(lines, parts, random.chance(0.5), random);
}

function editTuple(lines: string[], random: Random): void {
  const at = random.int(lines.length);
  // An earlier edit of this archive may have left a line that is not JSON any more.
  const parsed = tryParse(lines[at]);
  const tuple = Array.isArray(parsed) ? parsed : ['N', '1', [], {}];
  const isNode = tuple[0] === 'N';
  const nodeIds = lines.filter((line) => line.startsWith('["N",')).map((line) => String((tryParse(line) as unknown[] | null)?.[1] ?? '1'));
  const edits: (() => void)[] = [
    () => (tuple[1] = random.pick(STRANGE_IDS)),
    () => (tuple[1] = String(1 + random.int(10_000))),
    () => (tuple[1] = random.pick(nodeIds)), // a repeated id, for nodes
    () => (tuple[random.int(tuple.length)] = random.pick(STRANGE_VALUES)),
    () => (isNode ? (tuple[2] = random.pick([['A', 'A'], [null], [''], ['New'], [], ['Person', 'Extra']])) : (tuple[2] = random.pick(['', null, 'NEW', 5]))),
    () => (isNode ? undefined : (tuple[random.pick([3, 4])] = random.pick([...STRANGE_IDS, '99999', random.pick(nodeIds)]))),
    () => (tuple[tuple.length - 1] = random.pick([{ v: 1 }, { nested: { deep: [1, [2, { x: null }]] } }, { s: 'Ω\u0000\u2028' }, [], null])),
    () => tuple.push(random.pick(STRANGE_VALUES)),
    () => tuple.pop(),
    () => (tuple[0] = isNode ? 'R' : 'N'),
  ];
  const structural: (() => void)[] = [
    () => lines.splice(at, 1),
    () => lines.splice(at, 0, lines[at]),
    () => lines.splice(random.int(lines.length), 0, lines[at]),
    () => lines.reverse(),
  ];
  if (random.chance(0.15)) {
    random.pick(structural)();
    return;
  }
  random.pick(edits)();
  lines[at] = random.chance(0.1) ? rawValueEdit(tuple, random) : JSON.stringify(tuple);
}

function tryParse(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

/** A tuple whose properties carry a JSON literal JSON.stringify would never write (1e400, -0, escapes, JSON5...). */
function rawValueEdit(tuple: unknown[], random: Random): string {
  const last = tuple[tuple.length - 1];
  const properties = JSON.stringify({ ...(typeof last === 'object' && last !== null && !Array.isArray(last) ? last : {}), p: 0 }).replace('"p":0', `"p":${random.pick(STRANGE_JSON)}`);
  return `${JSON.stringify(tuple.slice(0, -1)).slice(0, -1)},${properties}]`;
}

function editFrameText(parts: ArchiveParts, random: Random): ArchiveParts {
  const frames = [...parts.frames];
  const i = random.int(frames.length);
  const text = frames[i];
  const at = random.int(text.length);
  const replacement = random.pick(['', ',', '"', '\n', ']', '[', '0', '-', 'é', '\\', ' ', '}', '{}', '\u0000']);
  frames[i] = text.slice(0, at) + replacement + text.slice(at + (random.chance(0.5) ? 1 : 0));
  return { ...parts, frames };
}

/** Valid records that take more room than the target has, under a header claiming they take none. */
function oversized(random: Random): Buffer {
  const count = 300 + random.int(400);
  const lines = Array.from({ length: count }, (_, i) => JSON.stringify(['N', String(i + 1), ['Big'], { text: `${i}`.padEnd(1000, 'x') }]));
  return craftArchive(lines, { stats: { storeSizeBytes: 0 } });
}

/** The lines regrouped into frames, under the header as it was or with stats that agree with the lines. */
function craftArchiveParts(lines: string[], parts: ArchiveParts, agreeingStats: boolean, random: Random): ArchiveParts {
  const header = JSON.parse(parts.headerJson);
  if (agreeingStats) header.stats = { ...statsOfLines(lines), storeSizeBytes: header.stats.storeSizeBytes };
  const frames = chunk(lines, 5 + random.int(40)).map((group) => group.map((line) => `${line}\n`).join(''));
  return { version: parts.version, headerJson: JSON.stringify(header), frames };
}

function chunk<T>(list: T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < list.length; i += size) chunks.push(list.slice(i, i + size));
  return chunks;
}

// ---------------------------------------------------------------------------------------------
// Sending and checking

type Outcome =
  | { kind: 'refused'; code: string; stage: 'upload' | 'restore' }
  | { kind: 'accepted' }
  | { kind: 'crash'; detail: string }
  | { kind: 'hang'; detail: string };

async function sendGraphql(server: TestServer, instanceId: string, file: Buffer): Promise<{ operationId?: string; code?: string; crash?: string }> {
  const form = new FormData();
  form.append('operations', JSON.stringify({ query: RESTORE_FROM_FILE, variables: { instanceId, file: null, confirm: 'RESTORE' } }));
  form.append('map', JSON.stringify({ 0: ['variables.file'] }));
  form.append('0', new Blob([file], { type: 'application/octet-stream' }), 'fuzz.backup');
  const response = await fetch(server.graphqlUrl, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminKey}`, 'apollo-require-preflight': 'true' },
    body: form,
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await response.text();
  let body: { data?: { restoreFromFile?: { id: string } } | null; errors?: { extensions?: { code?: string } }[] };
  try {
    body = JSON.parse(text);
  } catch {
    return { crash: `HTTP ${response.status}, not JSON: ${text.slice(0, 200)}` };
  }
  if (body.errors?.length) return { code: body.errors[0].extensions?.code ?? 'NO_CODE' };
  return { operationId: body.data?.restoreFromFile?.id };
}

async function sendTus(server: TestServer, instanceId: string, file: Buffer): Promise<{ operationId?: string; code?: string; crash?: string }> {
  const { status, operationId, body } = await tusUpload(server, { instanceId, file, signal: AbortSignal.timeout(TIMEOUT_MS) });
  if (operationId) return { operationId };
  const code = refusalCode(body);
  if (!code) return { crash: `tus HTTP ${status}: ${body.slice(0, 200)}` };
  return { code };
}

async function settle(server: TestServer, operationId: string): Promise<{ status: string; code?: string } | null> {
  const deadline = Date.now() + 4 * TIMEOUT_MS;
  while (Date.now() < deadline) {
    const operation = await operationById(server, operationId);
    if (operation && (operation.status === 'SUCCEEDED' || operation.status === 'FAILED')) {
      return { status: operation.status, code: operation.error?.code };
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return null;
}

async function send(server: TestServer, instanceId: string, file: Buffer, channel: 'graphql' | 'tus'): Promise<Outcome> {
  let answer: { operationId?: string; code?: string; crash?: string };
  try {
    answer = await (channel === 'graphql' ? sendGraphql : sendTus)(server, instanceId, file);
  } catch (error) {
    const name = (error as Error).name;
    if (name === 'TimeoutError' || name === 'AbortError') return { kind: 'hang', detail: `${channel} request over ${TIMEOUT_MS} ms` };
    return { kind: 'crash', detail: `${channel}: ${(error as Error).message} ${String((error as { cause?: unknown }).cause ?? '')}` };
  }
  if (answer.crash) return { kind: 'crash', detail: answer.crash };
  if (answer.code) return { kind: 'refused', code: answer.code, stage: 'upload' };
  const settled = await settle(server, answer.operationId!);
  if (!settled) return { kind: 'hang', detail: `operation ${answer.operationId} did not finish` };
  if (settled.status === 'FAILED') return { kind: 'refused', code: settled.code ?? 'NO_CODE', stage: 'restore' };
  return { kind: 'accepted' };
}

/** The instance is idle and AVAILABLE again after a restore's end (its operation ends a moment before). */
async function idleState(server: TestServer, instanceId: string) {
  for (let i = 0; i < 500; i++) {
    const state = await instanceState(server, instanceId);
    if (state.currentOperation === null) return state;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return instanceState(server, instanceId);
}

function same(a: unknown, b: unknown): boolean {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

async function main() {
  const started = Date.now();
  const server = await startServer({ config: { bytesPerStorageGB: 100_000 } });
  try {
    // The small graph the archives start from: labels, types, varied properties, a self-loop.
    const source = await createInstance(server, { name: 'fuzz-source', tier: 'PROFESSIONAL', memoryGB: 16 });
    const nodes = await createNodes(
      server,
      source.id,
      Array.from({ length: 40 }, (_, i) => ({
        labels: i % 7 === 0 ? [] : i % 3 === 0 ? ['Person', 'Employee'] : [i % 2 ? 'Person' : 'Company'],
        properties: { i, name: `n${i} Zoë 東京`, ratio: i / 7, tags: ['a', i % 2 === 0], nested: { deep: { x: i % 3 === 0 ? null : [i] } } },
      })),
    );
    await createRelationships(
      server,
      source.id,
      nodes.slice(1).map((node, i) => ({ type: i % 4 === 0 ? 'WORKS_AT' : 'KNOWS', startNodeId: node.id, endNodeId: nodes[(i * 7) % nodes.length].id, properties: { w: i } })),
    );
    // The exported archive, regrouped into frames of 10 records so that there are frames to reorder.
    const exported = unsealArchive(await archiveOf(server, (await takeSnapshot(server, source.id)).id));
    const records = exported.frames.join('').split('\n').filter((line) => line.length > 0);
    const base = sealArchive({ ...exported, endCounts: undefined, frames: chunk(records, 10).map((lines) => lines.map((line) => `${line}\n`).join('')) });
    // 1 GB of memory here means 200 kB of storage: room for the graph, not for an oversized body.
    const target = await createInstance(server, { name: 'fuzz-target', tier: 'PROFESSIONAL', memoryGB: 1 });
    let expected: Graph = await graphOf(server, target.id);

    const random = generator(SEED);
    const refused = new Map<string, number>();
    const counts = { acceptedIdentical: 0, acceptedDifferent: 0, crashes: 0, hangs: 0, changedByRefusal: 0 };
    const problems: string[] = [];
    /** Per mutation: how its archives ended, to show which ones reached which check. */
    const byMutation = new Map<string, Record<string, number>>();
    const tally = (mutation: string, result: string) => {
      const entry = byMutation.get(mutation) ?? {};
      entry[result] = (entry[result] ?? 0) + 1;
      byMutation.set(mutation, entry);
    };
    for (let i = 0; i < COUNT; i++) {
      if (i > 0 && i % 100 === 0) process.stderr.write(`${i}/${COUNT} (${Math.round((Date.now() - started) / 1000)} s)\n`);
      const { name, bytes } = mutate(base, random);
      const channel = i % 2 === 0 ? 'graphql' : 'tus';
      const outcome = await send(server, target.id, bytes, channel);
      const label = `#${i} ${name} via ${channel}`;
      tally(name, outcome.kind === 'refused' ? `${outcome.code} (${outcome.stage})` : outcome.kind);
      if (outcome.kind === 'crash' || outcome.kind === 'hang') {
        counts[outcome.kind === 'crash' ? 'crashes' : 'hangs']++;
        problems.push(`${label}: ${outcome.kind}: ${outcome.detail}`);
        if (server.process.exitCode !== null || server.process.signalCode !== null) {
          problems.push(`the server exited (${server.process.exitCode ?? server.process.signalCode}); restarting`);
          await server.restart();
        }
        continue;
      }
      const state = await idleState(server, target.id);
      const now = await graphOf(server, target.id);
      if (outcome.kind === 'refused') {
        const key = `${outcome.code} (${outcome.stage})`;
        refused.set(key, (refused.get(key) ?? 0) + 1);
        if (outcome.code === 'INTERNAL_SERVER_ERROR') problems.push(`${label}: INTERNAL_SERVER_ERROR`);
        if (!same(now, expected) || state.status !== 'RUNNING' || state.availability !== 'AVAILABLE') {
          counts.changedByRefusal++;
          problems.push(`${label}: refused with ${outcome.code}, but the instance changed (${state.status}/${state.availability})`);
          expected = now;
        }
        continue;
      }
      let archived: Graph | null = null;
      try {
        archived = graphOfArchive(bytes);
      } catch {
        // An archive that cannot even be taken apart must never have been accepted.
      }
      if (archived && same(now, archived) && state.availability === 'AVAILABLE') counts.acceptedIdentical++;
      else {
        counts.acceptedDifferent++;
        problems.push(`${label}: accepted, but the instance does not hold the archive's graph`);
      }
      expected = now;
      if (counts.acceptedIdentical % 25 === 1) {
        // Now and then the longer way round too: a snapshot of the result exports the same records.
        const exported = graphOfArchive(await archiveOf(server, (await takeSnapshot(server, target.id)).id));
        if (!same(exported, now)) {
          counts.acceptedDifferent++;
          problems.push(`${label}: a snapshot of the restored graph exports other records`);
        }
      }
    }

    const report = {
      archives: COUNT,
      seed: SEED,
      seconds: Math.round((Date.now() - started) / 1000),
      refusedByCode: Object.fromEntries([...refused].sort((a, b) => b[1] - a[1])),
      acceptedAndIdentical: counts.acceptedIdentical,
      acceptedButDifferent: counts.acceptedDifferent,
      refusedButChanged: counts.changedByRefusal,
      crashes: counts.crashes,
      hangs: counts.hangs,
      // Whatever was refused or restored, nothing is left behind: no upload, no shadow store.
      uploadsLeft: uploadBlobs(server.dataDir).length,
      targetStoreFiles: storeGenerations(server.dataDir, target.id).length,
      byMutation: Object.fromEntries(byMutation),
    };
    console.log(JSON.stringify(report, null, 2));
    for (const problem of problems.slice(0, 50)) console.log(problem);
    const failed =
      counts.acceptedDifferent + counts.changedByRefusal + counts.crashes + counts.hangs + report.uploadsLeft > 0 ||
      report.targetStoreFiles !== 1 || refused.has('INTERNAL_SERVER_ERROR (upload)') || refused.has('INTERNAL_SERVER_ERROR (restore)');
    process.exitCode = failed ? 1 : 0;
  } finally {
    await server.stop().catch(() => undefined);
    await releaseAll();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
