// A deterministic synthetic graph (labels, types, mixed property types) as tuple lines, for benchmarks.
import type { EncodedBatch } from '../../src/graph/records';

export const LABELS = ['Person', 'Movie', 'Company', 'City', 'Tag'];
export const TYPES = ['KNOWS', 'ACTED_IN', 'LOCATED_IN'];

/** Deterministic pseudo-random numbers, so runs are comparable. */
export function rng(seed = 42): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

export async function* syntheticGraph(nodes: number, relationships: number, batch = 5_000): AsyncGenerator<EncodedBatch> {
  const random = rng();
  for (let start = 1; start <= nodes; start += batch) {
    const lines: string[] = [];
    for (let id = start; id < Math.min(start + batch, nodes + 1); id++) {
      const properties = { name: `node-${id}`, age: id % 97, score: Math.round(random() * 1e6) / 1e3, active: id % 2 === 0, tags: ['a', 'b'] };
      lines.push(JSON.stringify(['N', String(id), [LABELS[id % LABELS.length]], properties]));
    }
    yield { kind: 'node', lines };
  }
  for (let start = 1; start <= relationships; start += batch) {
    const lines: string[] = [];
    for (let id = start; id < Math.min(start + batch, relationships + 1); id++) {
      const from = String(1 + Math.floor(random() * nodes));
      const to = String(1 + Math.floor(random() * nodes));
      const properties = { since: 1990 + (id % 35), weight: Math.round(random() * 100) / 100 };
      lines.push(JSON.stringify(['R', String(id), TYPES[id % TYPES.length], from, to, properties]));
    }
    yield { kind: 'relationship', lines };
  }
}

