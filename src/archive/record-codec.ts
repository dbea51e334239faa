// One record = one line of JSON holding a positional tuple (docs/archive-format.md, "Records"):
//   ["N", id, labels, properties]
//   ["R", id, type, startNodeId, endNodeId, properties]
// Tuples rather than objects: smaller before compression, and faster to parse.
import type { GraphRecord, PropertyMap } from '../graph/records';
import { ArchiveError } from './archive-error';
import type { CheckedRecord } from './record-validation';

const NODE_TAG = 'N';
const RELATIONSHIP_TAG = 'R';

/** The record as one JSON line, without its newline. Throws INVALID_RECORD for a malformed record. */
export function encodeRecordLine(record: GraphRecord): string {
  try {
    if (record.kind === 'node') {
      const { id, labels, properties } = record.node;
      if (typeof id !== 'string' || !isStringList(labels) || !isPropertyMap(properties)) throw invalidShape(record);
      return JSON.stringify([NODE_TAG, id, labels, properties]);
    }
    if (record.kind === 'relationship') {
      const { id, type, startNodeId, endNodeId, properties } = record.relationship;
      if (
        typeof id !== 'string' ||
        typeof type !== 'string' ||
        typeof startNodeId !== 'string' ||
        typeof endNodeId !== 'string' ||
        !isPropertyMap(properties)
      ) {
        throw invalidShape(record);
      }
      return JSON.stringify([RELATIONSHIP_TAG, id, type, startNodeId, endNodeId, properties]);
    }
  } catch (err) {
    if (err instanceof ArchiveError) throw err;
    // JSON.stringify refuses BigInt values and cycles.
    throw new ArchiveError('INVALID_RECORD', `Cannot write a record: ${(err as Error).message}`, { cause: err });
  }
  throw invalidShape(record);
}

/** A record the validator has checked (record-validation.ts), as the graph's type. */
export function toGraphRecord({ kind, tuple }: CheckedRecord): GraphRecord {
  if (kind === 'node') {
    return { kind, node: { id: tuple[1] as string, labels: tuple[2] as string[], properties: tuple[3] as PropertyMap } };
  }
  return {
    kind,
    relationship: {
      id: tuple[1] as string,
      type: tuple[2] as string,
      startNodeId: tuple[3] as string,
      endNodeId: tuple[4] as string,
      properties: tuple[5] as PropertyMap,
    },
  };
}

function isStringList(value: unknown): value is string[] {
  if (!Array.isArray(value)) return false;
  for (const item of value) if (typeof item !== 'string') return false;
  return true;
}

function isPropertyMap(value: unknown): value is PropertyMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalidShape(record: GraphRecord): ArchiveError {
  const kind = (record as { kind?: unknown } | null)?.kind;
  return new ArchiveError('INVALID_RECORD', `Cannot write a record of kind ${JSON.stringify(kind)}: its fields have the wrong types.`);
}
