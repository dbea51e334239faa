// A deterministic synthetic graph (labels, types, mixed property types) as tuple lines, for benchmarks.
// Two kinds of properties: 'simple' (short and repetitive, as the first benchmarks used: they compress far better
// than real data, which flatters every size and time that compression touches) and 'realistic' (`--realistic`:
// names, e-mail addresses, dates, amounts, ids and free text drawn from a seeded generator, compressing about as
// much as real records do).
import type { EncodedBatch } from '../../src/graph/records';

export const LABELS = ['Person', 'Movie', 'Company', 'City', 'Tag'];
export const TYPES = ['KNOWS', 'ACTED_IN', 'LOCATED_IN'];

export type PropertyStyle = 'simple' | 'realistic';

/** 'realistic' when the command line says `--realistic`. */
export function propertyStyleFromArgs(argv: readonly string[] = process.argv): PropertyStyle {
  return argv.includes('--realistic') ? 'realistic' : 'simple';
}

/** Deterministic pseudo-random numbers, so runs are comparable. */
export function rng(seed = 42): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const FIRST_NAMES = ['Ada', 'Bruno', 'Chiara', 'Dmitri', 'Elif', 'Farah', 'Goran', 'Hana', 'Ines', 'Jonas', 'Kemal', 'Lena', 'Mateo', 'Nadia', 'Oskar', 'Priya', 'Quentin', 'Rosa', 'Sven', 'Tomoko', 'Ugo', 'Vera', 'Wen', 'Ximena', 'Yusuf', 'Zofia'];
const LAST_NAMES = ['Achterberg', 'Bianchi', 'Castillo', 'Dubois', 'Eriksen', 'Fischer', 'Gonzalez', 'Horvath', 'Ivanova', 'Jansen', 'Kowalski', 'Lindqvist', 'Moreau', 'Nakamura', 'Okafor', 'Petrov', 'Quispe', 'Rossi', 'Schmidt', 'Tanaka', 'Usman', 'Varga', 'Wojcik', 'Yilmaz', 'Zhang'];
const CITIES = ['Lisbon', 'Tallinn', 'Osaka', 'Valparaíso', 'Kraków', 'Nairobi', 'Montréal', 'Ljubljana', 'Medellín', 'Tbilisi', 'Aarhus', 'Porto Alegre'];
const DOMAINS = ['example.com', 'mail.example.org', 'corp.example.net', 'uni.example.edu'];
const SYLLABLES = ['ka', 'lo', 'mi', 'ren', 'sta', 'vo', 'quin', 'dra', 'el', 'shu', 'ter', 'po', 'an', 'bri', 'cul', 'dem', 'fos', 'gal', 'hir', 'jun', 'mar', 'nex', 'or', 'pel', 'tra', 'zin'];

/** A vocabulary of made-up words; free text draws from it with a skew, as natural text uses a few words often. */
function vocabulary(random: () => number, size: number): string[] {
  const words: string[] = [];
  for (let i = 0; i < size; i++) {
    let word = '';
    for (let s = 1 + Math.floor(random() * 3); s >= 0; s--) word += SYLLABLES[Math.floor(random() * SYLLABLES.length)];
    words.push(word);
  }
  return words;
}

const pick = <T>(random: () => number, list: readonly T[]): T => list[Math.floor(random() * list.length)];
const hex = (random: () => number, digits: number) => {
  let text = '';
  while (text.length < digits) text += Math.floor(random() * 2 ** 32).toString(16).padStart(8, '0');
  return text.slice(0, digits);
};
const isoDate = (random: () => number, fromYear: number, years: number) =>
  new Date(Date.UTC(fromYear, 0, 1) + Math.floor(random() * years * 365.25 * 86_400_000)).toISOString();

/** Property generators for nodes and relationships of one style; `n` is the record's index. */
export interface PropertyMaker {
  node(n: number): Record<string, unknown>;
  relationship(n: number): Record<string, unknown>;
}

export function propertyMaker(style: PropertyStyle, random: () => number): PropertyMaker {
  if (style === 'simple') {
    return {
      node: (n) => ({ name: `node-${n}`, age: n % 97, score: Math.round(random() * 1e6) / 1e3, active: n % 2 === 0, tags: ['a', 'b'] }),
      relationship: (n) => ({ since: 1990 + (n % 35), weight: Math.round(random() * 100) / 100 }),
    };
  }
  const words = vocabulary(rng(7), 4000);
  const text = (count: number) => {
    const chosen: string[] = [];
    // Cubed: a skewed choice, the first words far more often than the last.
    for (let i = 0; i < count; i++) chosen.push(words[Math.floor(random() ** 3 * words.length)]);
    return chosen.join(' ');
  };
  return {
    node: (n) => {
      const first = pick(random, FIRST_NAMES);
      const last = pick(random, LAST_NAMES);
      return {
        name: `${first} ${last}`,
        email: `${first}.${last}${Math.floor(random() * 10_000)}@${pick(random, DOMAINS)}`.toLowerCase(),
        born: isoDate(random, 1940, 70).slice(0, 10),
        city: pick(random, CITIES),
        balance: Math.round((random() - 0.3) * 1e8) / 100,
        rating: Math.round(random() * 5e4) / 1e4,
        externalId: hex(random, 32),
        bio: text(6 + Math.floor(random() * 20)),
        tags: Array.from({ length: 1 + Math.floor(random() * 3) }, () => words[Math.floor(random() ** 2 * 200)]),
        active: random() < 0.8,
        seq: n,
      };
    },
    relationship: () => ({
      since: isoDate(random, 1995, 30),
      weight: Math.round(random() * 1e6) / 1e6,
      source: pick(random, ['import', 'api', 'merge', 'manual']),
      ...(random() < 0.3 ? { note: text(3 + Math.floor(random() * 8)) } : {}),
    }),
  };
}

export async function* syntheticGraph(nodes: number, relationships: number, batch = 5_000, style: PropertyStyle = 'simple'): AsyncGenerator<EncodedBatch> {
  const random = rng();
  const properties = propertyMaker(style, random);
  for (let start = 1; start <= nodes; start += batch) {
    const lines: string[] = [];
    for (let id = start; id < Math.min(start + batch, nodes + 1); id++) {
      lines.push(JSON.stringify(['N', String(id), [LABELS[id % LABELS.length]], properties.node(id)]));
    }
    yield { kind: 'node', lines };
  }
  for (let start = 1; start <= relationships; start += batch) {
    const lines: string[] = [];
    for (let id = start; id < Math.min(start + batch, relationships + 1); id++) {
      const from = String(1 + Math.floor(random() * nodes));
      const to = String(1 + Math.floor(random() * nodes));
      lines.push(JSON.stringify(['R', String(id), TYPES[id % TYPES.length], from, to, properties.relationship(id)]));
    }
    yield { kind: 'relationship', lines };
  }
}
