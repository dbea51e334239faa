// Property values and names as APOC's Cypher export writes them (CypherFormatterUtils, FormatUtils), for values Neo4j
// can store: strings, numbers, booleans, points, and lists of one of these kinds.

/** Thrown for a value Neo4j cannot store as a property: `subject` names it (once known), `problem` says why. */
export class UnstorableValue extends Error {
  constructor(
    readonly problem: string,
    readonly subject = 'a property',
  ) {
    super(`${subject} ${problem}`);
  }
}

/**
 * A name as APOC quotes it (Util.quote): bare when an identifier, else in backticks (a backtick inside doubled).
 * An empty name, or one holding U+0000, is refused as Neo4j refuses it. A name holding a line break is refused:
 * Snapgraph reads a script line by line (a statement ends at a line ending in ";", and a line's CR goes), so it would
 * read back changed, or not at all.
 */
export function cypherName(name: string, subject = 'a name'): string {
  // Neo4j's own rule for every token (label, type, property key): "Token names cannot be empty or contain any null-bytes".
  if (name === '') throw new UnstorableValue('is empty, which Neo4j refuses as a name (cypher-shell could not load the script)', subject);
  if (name.includes('\u0000')) throw new UnstorableValue('holds U+0000, which Neo4j refuses in a name (cypher-shell could not load the script)', subject);
  if (/[\r\n]/.test(name)) throw new UnstorableValue('holds a line break, which a Cypher script cannot carry back into Snapgraph', subject);
  // A `quoted name` has no escapes, and UTF-8 has no lone surrogate: the script would hold U+FFFD in its place.
  if (LONE_SURROGATE.test(name)) throw new UnstorableValue('holds a lone UTF-16 surrogate, which a Cypher script (UTF-8) cannot carry', subject);
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : `\`${name.replace(/`/g, '``')}\``;
}

/** `{key:value, …}` with keys in the record's order; `owner` (e.g. "node 17") names the record in errors. */
export function cypherMap(properties: Record<string, unknown>, owner: string): string {
  const parts: string[] = [];
  for (const key in properties) {
    try {
      parts.push(`${cypherName(key)}:${cypherValue(properties[key])}`);
    } catch (error) {
      if (error instanceof UnstorableValue) throw new UnstorableValue(error.problem, `${owner}'s property ${JSON.stringify(key)}`);
      throw error;
    }
  }
  return `{${parts.join(', ')}}`;
}

export function cypherValue(value: unknown): string {
  if (typeof value === 'string') return cypherString(value);
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number') return cypherNumber(value, false);
  if (value === null) throw new UnstorableValue('is null, which Neo4j does not store');
  if (Array.isArray(value)) return cypherList(value);
  const point = pointText(value as Record<string, unknown>);
  if (point) return point;
  throw new UnstorableValue('is a map, which Neo4j cannot store as a property (only points are maps)');
}

function cypherList(values: unknown[]): string {
  const kinds = new Set(values.map((v) => (v === null ? 'null' : Array.isArray(v) ? 'list' : typeof v)));
  if (kinds.size > 1) throw new UnstorableValue('is a list of mixed types, which Neo4j cannot store');
  const kind = [...kinds][0];
  if (kind === 'object') return pointList(values as Array<Record<string, unknown>>);
  if (kind !== undefined && !['string', 'number', 'boolean'].includes(kind)) {
    throw new UnstorableValue(`is a list of ${kind}s, which Neo4j cannot store`);
  }
  // A list holding a fraction is a list of floats in Neo4j: its whole numbers are written as floats too.
  const floats = kind === 'number' && values.some((v) => !Number.isInteger(v));
  return `[${values.map((v) => (kind === 'number' ? cypherNumber(v as number, floats) : cypherValue(v))).join(', ')}]`;
}

/** A point array, as Neo4j stores one: every element a point, all of one coordinate reference system. */
function pointList(maps: Array<Record<string, unknown>>): string {
  const points = maps.map(pointText);
  if (points.some((point) => point === undefined)) throw new UnstorableValue('is a list of maps, which Neo4j cannot store (only of points)');
  if (new Set(maps.map((map) => map.crs)).size > 1) {
    throw new UnstorableValue('is a list of points of different coordinate reference systems, which Neo4j cannot store');
  }
  return `[${points.join(', ')}]`;
}

/** Integers as digits; floats as Java prints doubles where Cypher needs it (1.0E21), otherwise as JavaScript does. */
export function cypherNumber(value: number, asFloat: boolean): string {
  if (Number.isSafeInteger(value)) return asFloat ? `${value}.0` : String(value);
  // A whole double beyond 2^53 printed as digits would read back as an integer Snapgraph refuses: give it an exponent.
  const text = Number.isInteger(value) ? value.toExponential() : String(value);
  if (!/e/.test(text)) return text;
  const [mantissa, exponent] = text.split('e');
  return `${mantissa.includes('.') ? mantissa : `${mantissa}.0`}E${exponent.replace('+', '')}`;
}

/**
 * As FormatUtils.formatString, and other control characters as \uXXXX (APOC leaves them raw); so is a lone UTF-16
 * surrogate, which UTF-8 cannot hold (the script would carry U+FFFD in its place).
 */
export function cypherString(text: string): string {
  return `"${text.replace(/[\\"\u0000-\u001f\u2028\u2029]|\p{Cs}/gu, (c) => STRING_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}

/** In a `u` pattern a surrogate pair is one code point: only a lone surrogate matches. */
export const LONE_SURROGATE = /\p{Cs}/u;

const STRING_ESCAPES: Record<string, string> = { '\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * point({x: …, y: …[, z: …], crs: '…'}) as Neo4j prints a point, for a map in Snapgraph's point shape (or in the shape
 * APOC's JSON export gives a 2D point, its third coordinate null).
 */
export function pointText(map: Record<string, unknown>): string | undefined {
  const keys = Object.keys(map);
  const numbers = (names: string[]) => names.every((name) => typeof map[name] === 'number');
  const crs = map.crs;
  let coordinates: string[];
  if ((crs === 'cartesian' || crs === 'cartesian-3d') && numbers(['x', 'y'])) {
    coordinates = crs === 'cartesian' ? ['x', 'y'] : ['x', 'y', 'z'];
  } else if ((crs === 'wgs-84' || crs === 'wgs-84-3d') && numbers(['longitude', 'latitude'])) {
    coordinates = crs === 'wgs-84' ? ['longitude', 'latitude'] : ['longitude', 'latitude', 'height'];
  } else {
    return undefined;
  }
  // apoc.export.json (PointSerializer) writes a 2D point with its third coordinate null: {"crs":"wgs-84",…,"height":null}.
  const third = crs.startsWith('cartesian') ? 'z' : 'height';
  const nullThird = coordinates.length === 2 && third in map && map[third] === null ? 1 : 0;
  if (keys.length !== coordinates.length + 1 + nullThird || !numbers(coordinates)) return undefined;
  const [x, y, z] = coordinates.map((name) => cypherNumber(map[name] as number, true));
  return `point({x: ${x}, y: ${y}${z === undefined ? '' : `, z: ${z}`}, crs: '${crs}'})`;
}

/**
 * A point as Snapgraph holds it: {crs, x, y[, z]} for cartesian points, {crs, longitude, latitude[, height]} for
 * WGS-84 ones (APOC's JSON export names them so); APOC's Cypher writes point({x: …, y: …[, z: …], crs: '…'}).
 */
export function pointOf(map: Record<string, unknown>, fail: (problem: string) => never): Record<string, unknown> {
  // As Neo4j's point(): a key it does not know, both kinds of coordinates, or a crs of other dimensions than the
  // coordinates given is refused. Read leniently, {x, y, z, crs: 'cartesian'} became a 2D point holding a z (a map
  // Neo4j cannot store, refused only at export), and {x, y, longitude, latitude} dropped the longitude and latitude.
  const unknown = Object.keys(map).find((key) => !POINT_KEYS.has(key));
  if (unknown !== undefined) fail(`the point has the key ${JSON.stringify(unknown)}, which a point has not`);
  const number = (key: string) => {
    const value = map[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number') fail(`the point's ${key} is not a number`);
    return value;
  };
  const geographic = 'longitude' in map || 'latitude' in map || 'height' in map;
  if (geographic && ('x' in map || 'y' in map || 'z' in map)) fail('a point has x, y (and z) or longitude, latitude (and height), not both');
  const x = number('x') ?? number('longitude');
  const y = number('y') ?? number('latitude');
  const z = number('z') ?? number('height');
  if (x === undefined || y === undefined) fail('a point needs x and y (or longitude and latitude)');
  const bySrid = map.srid === undefined ? undefined : (SRID_CRS[String(map.srid)] ?? fail(`the point's srid ${JSON.stringify(map.srid)} is not one Neo4j knows`));
  const named = typeof map.crs === 'string' ? map.crs.toLowerCase() : map.crs === undefined ? undefined : fail("the point's crs is not a name");
  if (named !== undefined && bySrid !== undefined && named !== bySrid) fail(`the point's crs ${JSON.stringify(map.crs)} and srid ${map.srid} name different systems`);
  const crs = named ?? bySrid ?? `${geographic ? 'wgs-84' : 'cartesian'}${z === undefined ? '' : '-3d'}`;
  if (!['cartesian', 'cartesian-3d', 'wgs-84', 'wgs-84-3d'].includes(crs)) fail(`the point's crs ${JSON.stringify(map.crs)} is not one Neo4j knows`);
  if (crs.endsWith('-3d') !== (z !== undefined)) fail(`the point's crs ${crs} takes ${crs.endsWith('-3d') ? 3 : 2} coordinates, and it has ${z === undefined ? 2 : 3}`);
  if (crs.startsWith('wgs-84')) return z === undefined ? { crs, longitude: x, latitude: y } : { crs, longitude: x, latitude: y, height: z };
  return z === undefined ? { crs, x, y } : { crs, x, y, z };
}

const POINT_KEYS = new Set(['x', 'y', 'z', 'longitude', 'latitude', 'height', 'crs', 'srid']);

/** The coordinate reference systems Neo4j numbers (srid), by number. */
export const SRID_CRS: Readonly<Record<string, string>> = { '7203': 'cartesian', '9157': 'cartesian-3d', '4326': 'wgs-84', '4979': 'wgs-84-3d' };
