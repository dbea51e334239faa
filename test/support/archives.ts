// Archives built and taken apart byte by byte, independently of src/archive: tests and the fuzz script craft
// files whose checksums are all right (so only validation can refuse them) and read back what a file holds
// without trusting the reader under test. Layout: docs/archive-format.md.
import { createCipheriv, createHash } from 'node:crypto';
import { crc32, deflateRawSync, inflateRawSync } from 'node:zlib';

const MAGIC = Buffer.from([0x89, 0x53, 0x47, 0x41, 0x0d, 0x0a, 0x1a, 0x0a]);
const DATA = 0x44;
const END = 0x45;

/** An archive's parts, as they are stored: the header JSON's text and each data frame's text. */
export interface ArchiveParts {
  version: number;
  headerJson: string;
  /** Each data frame's decompressed text (newline-terminated tuple lines). */
  frames: string[];
  /** The end frame's counts; by default, the lines tagged N and R. */
  endCounts?: { nodes: number; relationships: number };
}

/** The bytes of `parts`, every checksum (header CRC, frame CRCs, SHA-256) computed for what they hold. */
export function sealArchive({ version, headerJson, frames, endCounts }: ArchiveParts): Buffer {
  const parts: Buffer[] = [headerPart(version, headerJson)];
  for (const text of frames) parts.push(...dataFrame(Buffer.from(text, 'utf8')));
  parts.push(...endFrame(endCounts ?? countLines(frames.join(''))));
  const body = Buffer.concat(parts);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

/** The preamble, header JSON and header CRC. */
function headerPart(version: number, headerJson: string): Buffer {
  const json = Buffer.from(headerJson, 'utf8');
  const preamble = Buffer.alloc(14);
  MAGIC.copy(preamble, 0);
  preamble.writeUInt16BE(version, 8);
  preamble.writeUInt32BE(json.length, 10);
  const headerCrc = Buffer.alloc(4);
  headerCrc.writeUInt32BE(crc32(json, crc32(preamble)));
  return Buffer.concat([preamble, json, headerCrc]);
}

const dataFrame = (raw: Buffer) => frame(DATA, raw.length, deflateRawSync(raw, { level: 1 }));

function endFrame(counts: { nodes: number; relationships: number }): Buffer[] {
  const end = Buffer.alloc(16);
  end.writeBigUInt64BE(BigInt(counts.nodes), 0);
  end.writeBigUInt64BE(BigInt(counts.relationships), 8);
  return frame(END, 16, end);
}

/**
 * A sound archive of `nodes` nodes (label N, ids from 1), each with a `pad` property of `padBytes` characters that do
 * not compress, made frame by frame as it is read: many MiB, never held whole. The same options give the same bytes
 * (so a first pass can measure its length).
 */
export async function* paddedArchive({ nodes, padBytes, nodesPerFrame = 8 }: { nodes: number; padBytes: number; nodesPerFrame?: number }): AsyncGenerator<Buffer> {
  const header = {
    engineVersion: 'V5',
    sourceInstanceId: 'crafted',
    sourceInstanceName: 'crafted',
    capturedAt: '2024-05-01T12:00:00.000Z',
    stats: { nodeCount: nodes, relationshipCount: 0, labels: [{ name: 'N', count: nodes }], relationshipTypes: [], storeSizeBytes: 4096 },
  };
  const digest = createHash('sha256');
  const emit = (part: Buffer) => (digest.update(part), part);
  yield emit(headerPart(1, JSON.stringify(header)));
  // Deterministic bytes that do not compress: AES-CTR of zeros under a fixed key, a counter block per frame.
  const key = Buffer.alloc(16, 7);
  for (let first = 1; first <= nodes; first += nodesPerFrame) {
    const iv = Buffer.alloc(16);
    iv.writeUInt32BE(first, 0);
    const pads = createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(Math.ceil((padBytes * 3) / 4) * nodesPerFrame)).toString('base64');
    let text = '';
    for (let id = first, at = 0; id < first + nodesPerFrame && id <= nodes; id++, at += padBytes) {
      text += `${JSON.stringify(['N', String(id), ['N'], { pad: pads.slice(at, at + padBytes) }])}\n`;
    }
    for (const part of dataFrame(Buffer.from(text, 'utf8'))) yield emit(part);
  }
  for (const part of endFrame({ nodes, relationships: 0 })) yield emit(part);
  yield digest.digest();
}

function frame(type: number, rawLength: number, stored: Buffer): Buffer[] {
  const head = Buffer.alloc(13);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(rawLength, 1);
  head.writeUInt32BE(stored.length, 5);
  head.writeUInt32BE(crc32(stored), 9);
  return [head, stored];
}

/** The parts of an intact archive (throws on anything it cannot take apart). */
export function unsealArchive(bytes: Buffer): ArchiveParts {
  const version = bytes.readUInt16BE(8);
  const jsonLength = bytes.readUInt32BE(10);
  const headerJson = bytes.toString('utf8', 14, 14 + jsonLength);
  const frames: string[] = [];
  let offset = 14 + jsonLength + 4;
  for (;;) {
    const type = bytes[offset];
    const storedLength = bytes.readUInt32BE(offset + 5);
    const stored = bytes.subarray(offset + 13, offset + 13 + storedLength);
    offset += 13 + storedLength;
    if (type === END) {
      return { version, headerJson, frames, endCounts: { nodes: Number(stored.readBigUInt64BE(0)), relationships: Number(stored.readBigUInt64BE(8)) } };
    }
    if (type !== DATA) throw new Error(`not a frame type: ${type}`);
    frames.push(inflateRawSync(stored).toString('utf8'));
  }
}

/** Where each data frame's stored bytes start (after its 13-byte frame header), in an archive's bytes. */
export function frameDataOffsets(bytes: Buffer): number[] {
  const offsets: number[] = [];
  for (let offset = 14 + bytes.readUInt32BE(10) + 4; bytes[offset] === DATA; offset += 13 + bytes.readUInt32BE(offset + 5)) offsets.push(offset + 13);
  return offsets;
}

/** A copy of the archive whose `index`th data frame's stored bytes do not inflate, their CRC made right. */
export function undeflatableFrame(bytes: Buffer, index: number): Buffer {
  const damaged = Buffer.from(bytes);
  const start = frameDataOffsets(damaged)[index];
  const stored = damaged.subarray(start, start + damaged.readUInt32BE(start - 13 + 5));
  stored.fill(0xff); // deflate block type 3: invalid
  damaged.writeUInt32BE(crc32(stored), start - 13 + 9);
  return damaged;
}

function countLines(text: string): { nodes: number; relationships: number } {
  const lines = text.split('\n');
  return { nodes: lines.filter((l) => l.startsWith('["N",')).length, relationships: lines.filter((l) => l.startsWith('["R",')).length };
}

export interface CraftedStats {
  nodeCount: number;
  relationshipCount: number;
  labels: { name: string; count: number }[];
  relationshipTypes: { name: string; count: number }[];
  storeSizeBytes: number;
}

/** The store size a crafted header claims. */
const CRAFTED_STORE_BYTES = 4096;

/**
 * The stats a header must carry to agree with `lines`, read leniently (a line that is not JSON, a label that is
 * not a string count for nothing), so that a crafted defect is met by record validation, not by the header.
 */
export function statsOfLines(lines: string[]): CraftedStats {
  const labels = new Map<string, number>();
  const types = new Map<string, number>();
  let nodeCount = 0;
  let relationshipCount = 0;
  for (const line of lines) {
    let tuple: unknown;
    try {
      tuple = JSON.parse(line);
    } catch {
      tuple = null;
    }
    if (line.startsWith('["N",')) {
      nodeCount++;
      const list = Array.isArray(tuple) && Array.isArray(tuple[2]) ? tuple[2] : [];
      for (const label of list) if (typeof label === 'string') labels.set(label, (labels.get(label) ?? 0) + 1);
    } else if (line.startsWith('["R",')) {
      relationshipCount++;
      const type = Array.isArray(tuple) ? tuple[2] : undefined;
      if (typeof type === 'string') types.set(type, (types.get(type) ?? 0) + 1);
    }
  }
  const list = (map: Map<string, number>) => [...map].map(([name, count]) => ({ name, count }));
  return { nodeCount, relationshipCount, labels: list(labels), relationshipTypes: list(types), storeSizeBytes: CRAFTED_STORE_BYTES };
}

/** The stats statsOfLines reads from the lines (storeSizeBytes is not among them). */
const COUNTED_STATS = ['nodeCount', 'relationshipCount', 'labels', 'relationshipTypes'] as const;

/**
 * A sealed archive of exactly these tuple lines, `linesPerFrame` to a frame, under a V5 header whose stats agree
 * with them (or are overridden). Lines are read for their stats only when `stats` leaves some count to them: reading
 * a node of a million labels took longer than verifying it.
 */
export function craftArchive(
  lines: string[],
  { stats = {}, linesPerFrame = 100, engineVersion = 'V5' }: { stats?: Partial<CraftedStats>; linesPerFrame?: number; engineVersion?: string } = {},
): Buffer {
  const counted = COUNTED_STATS.every((key) => key in stats) ? { storeSizeBytes: CRAFTED_STORE_BYTES } : statsOfLines(lines);
  const header = {
    engineVersion,
    sourceInstanceId: 'crafted',
    sourceInstanceName: 'crafted',
    capturedAt: '2024-05-01T12:00:00.000Z',
    stats: { ...counted, ...stats },
  };
  const frames: string[] = [];
  for (let i = 0; i < lines.length; i += linesPerFrame) frames.push(lines.slice(i, i + linesPerFrame).map((line) => `${line}\n`).join(''));
  return sealArchive({ version: 1, headerJson: JSON.stringify(header), frames });
}

/** The records an archive's tuple lines describe, parsed with nothing but JSON.parse: what a restore must give. */
export function recordsOfArchive(bytes: Buffer): { nodes: unknown[][]; relationships: unknown[][] } {
  const tuples = unsealArchive(bytes)
    .frames.join('')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as unknown[]);
  return { nodes: tuples.filter((t) => t[0] === 'N'), relationships: tuples.filter((t) => t[0] === 'R') };
}

/** The graph an archive describes, shaped and ordered as the API lists it (graphOf): what a restore must give. */
export function graphOfArchive(bytes: Buffer): {
  nodes: { id: string; labels: string[]; properties: Record<string, unknown> }[];
  relationships: { id: string; type: string; startNodeId: string; endNodeId: string; properties: Record<string, unknown> }[];
} {
  const { nodes, relationships } = recordsOfArchive(bytes);
  const byId = (a: { id: string }, b: { id: string }) => Number(a.id) - Number(b.id);
  return {
    nodes: nodes.map(([, id, labels, properties]) => ({ id, labels, properties }) as { id: string; labels: string[]; properties: Record<string, unknown> }).sort(byId),
    relationships: relationships
      .map(([, id, type, startNodeId, endNodeId, properties]) => ({ id, type, startNodeId, endNodeId, properties }) as {
        id: string; type: string; startNodeId: string; endNodeId: string; properties: Record<string, unknown>;
      })
      .sort(byId),
  };
}
