// The header line of a neo4j-admin import CSV file and the typed values of its cells, as neo4j-admin database import
// reads them (org.neo4j.internal.batchimport.input.csv.DataFactories, org.neo4j.csv.reader.Extractors):
//   an entry is <name>:<type>(<ID space>){<options>}; every part optional; a bare name is a string property.
//   types: ID, LABEL (nodes), START_ID, END_ID, TYPE (relationships), IGNORE, or a property type (any case):
//   string int long short byte char boolean float double point date localtime time localdatetime datetime duration,
//   each also as an array (type[]) whose elements a cell separates with ';'.
//   An empty cell is no value (no property); an empty quoted cell is the empty string for a string property.
import { pointOf, SRID_CRS } from './cypher-values';

export type ColumnRole = 'ID' | 'LABEL' | 'START_ID' | 'END_ID' | 'TYPE' | 'IGNORE' | 'PROPERTY';

export const PROPERTY_TYPES = [
  'string', 'int', 'long', 'short', 'byte', 'char', 'boolean', 'float', 'double',
  'point', 'date', 'localtime', 'time', 'localdatetime', 'datetime', 'duration',
] as const;
export type PropertyType = (typeof PROPERTY_TYPES)[number];

export interface Column {
  raw: string;
  role: ColumnRole;
  /** The property name (for ID: the property that also stores the id, if any). */
  name: string | null;
  /** The ID space of an ID, START_ID or END_ID column (null: the global one). */
  space: string | null;
  /** Of a property, or of an ID with `{id-type:…}` (string when not given). */
  type: PropertyType;
  array: boolean;
  options: Record<string, string>;
}

export type FileKind = 'nodes' | 'relationships';

export interface Header {
  kind: FileKind;
  columns: Column[];
}

/** The header of a file; throws Error(problem) when it is not one neo4j-admin (and Snapgraph) reads. */
export function parseHeader(fields: string[]): Header {
  if (fields.length === 1 && /[\t|;]/.test(fields[0]) && /:/.test(fields[0])) {
    throw new Error(`the header ${JSON.stringify(fields[0])} separates its columns with something other than ','; only the default delimiter (--delimiter=,) is supported`);
  }
  const columns = fields.map(parseEntry);
  const has = (role: ColumnRole) => columns.some((column) => column.role === role);
  const kind: FileKind | null = has('START_ID') || has('END_ID') || has('TYPE') ? 'relationships' : has('ID') || has('LABEL') ? 'nodes' : null;
  if (!kind) {
    throw new Error(
      'its first line is not a neo4j-admin header: it names no :ID, :LABEL, :START_ID, :END_ID or :TYPE column ' +
        '(headers in separate files, --nodes=header.csv,data.csv, are not supported: put the header on the first line of each file)',
    );
  }
  const seen = new Map<string, Column>();
  const singles = new Set<ColumnRole>();
  for (const column of columns) {
    if (kind === 'nodes' && ['START_ID', 'END_ID', 'TYPE'].includes(column.role)) throw new Error(`a node file cannot have a ${column.raw} column`);
    if (kind === 'relationships' && (column.role === 'ID' || column.role === 'LABEL')) throw new Error(`a relationship file cannot have a ${column.raw} column`);
    if (['START_ID', 'END_ID', 'TYPE', 'ID'].includes(column.role)) {
      if (singles.has(column.role)) throw new Error(`it has more than one :${column.role} column${column.role === 'ID' ? ' (composite ids are not supported)' : ''}`);
      singles.add(column.role);
    }
    if ((column.role === 'PROPERTY' || column.role === 'ID') && column.name !== null) {
      if (seen.has(column.name)) throw new Error(`the property ${JSON.stringify(column.name)} has two columns (${seen.get(column.name)!.raw} and ${column.raw})`);
      seen.set(column.name, column);
    }
  }
  if (kind === 'relationships') {
    if (!singles.has('START_ID') || !singles.has('END_ID')) throw new Error('a relationship file needs a :START_ID and an :END_ID column');
    if (!singles.has('TYPE')) {
      throw new Error('it has no :TYPE column: relationship types given only on the command line (--relationships=TYPE=file.csv) are not supported; add a :TYPE column');
    }
  } else if (!has('LABEL')) {
    throw new Error('it has no :LABEL column: labels given only on the command line (--nodes=Label=file.csv) are not supported; add a :LABEL column');
  }
  return { kind, columns };
}

/** One header entry, split as DataFactories.parseHeaderEntrySpec does: options, then the ID space, then the type. */
export function parseEntry(raw: string): Column {
  let rest = raw;
  let options: Record<string, string> = {};
  const optionsStart = rest.indexOf('{');
  if (optionsStart !== -1) {
    const optionsEnd = rest.lastIndexOf('}');
    if (optionsEnd < optionsStart) throw new Error(`the header entry ${JSON.stringify(raw)} has no closing '}'`);
    options = parseOptions(rest.slice(optionsStart + 1, optionsEnd), raw);
    rest = rest.slice(0, optionsStart) + rest.slice(optionsEnd + 1);
  }
  let space: string | null = null;
  const spaceStart = rest.indexOf('(');
  if (spaceStart !== -1) {
    const spaceEnd = rest.lastIndexOf(')');
    if (spaceEnd < spaceStart) throw new Error(`the header entry ${JSON.stringify(raw)} has no closing ')'`);
    space = rest.slice(spaceStart + 1, spaceEnd);
    rest = rest.slice(0, spaceStart) + rest.slice(spaceEnd + 1);
  }
  let typeSpec: string | null = null;
  const colon = rest.lastIndexOf(':');
  if (colon !== -1) {
    typeSpec = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const name = rest === '' ? null : rest;
  const column: Column = { raw, role: 'PROPERTY', name, space, type: 'string', array: false, options };
  if (raw === '') return { ...column, role: 'IGNORE' };
  if (typeSpec === null) return column;
  const upper = typeSpec.toUpperCase();
  if (['ID', 'LABEL', 'START_ID', 'END_ID', 'TYPE', 'IGNORE'].includes(upper)) {
    column.role = upper as ColumnRole;
    if (column.role === 'ID' && options['id-type'] !== undefined) Object.assign(column, propertyType(options['id-type'], raw));
    return column;
  }
  if (space !== null) throw new Error(`the header entry ${JSON.stringify(raw)} names an ID space, which only :ID, :START_ID and :END_ID columns have`);
  return { ...column, ...propertyType(typeSpec, raw) };
}

function propertyType(spec: string, raw: string): { type: PropertyType; array: boolean } {
  const array = spec.endsWith('[]');
  const base = (array ? spec.slice(0, -2) : spec).toLowerCase();
  const type = base === 'integer' ? 'long' : base;
  if (!(PROPERTY_TYPES as readonly string[]).includes(type)) {
    throw new Error(`the header entry ${JSON.stringify(raw)} has the unknown type ${JSON.stringify(spec)} (known: ${PROPERTY_TYPES.join(', ')}, each also as an array type[])`);
  }
  return { type: type as PropertyType, array };
}

/** `key:value, key:'value'` (the inside of `{…}`), keys and values trimmed, quotes removed. */
function parseOptions(text: string, raw: string): Record<string, string> {
  const options: Record<string, string> = {};
  for (const part of text.split(',')) {
    if (part.trim() === '') continue;
    const colon = part.indexOf(':');
    if (colon === -1) throw new Error(`the options of the header entry ${JSON.stringify(raw)} are not key:value pairs`);
    options[part.slice(0, colon).trim().toLowerCase()] = unquote(part.slice(colon + 1).trim());
  }
  return options;
}

const unquote = (text: string) => (/^(['"]).*\1$/.test(text) ? text.slice(1, -1) : text);

/**
 * The property value of a cell in `column`, or undefined for no value (an empty cell). Throws Error(problem) for a
 * cell the type cannot read.
 */
export function cellValue(column: Column, text: string, quoted: boolean): unknown {
  if (text === '') return column.type === 'string' && !column.array && quoted ? '' : undefined;
  if (!column.array) return scalar(column, text);
  // The array delimiter is ';' (--array-delimiter's default); elements are not trimmed, as neo4j-admin reads them.
  return text.split(';').map((element) => scalar(column, element));
}

const INTEGER_RANGE: Partial<Record<PropertyType, number>> = { int: 2 ** 31, short: 2 ** 15, byte: 2 ** 7 };
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fFdD]?$/;
// ISO-8601 as Neo4j's temporal parsers read it; the value is kept as written.
const DATE = String.raw`[+-]?\d{4,9}(?:-?(?:\d{2}(?:-?\d{2})?|W\d{2}(?:-?\d)?|Q\d(?:-?\d{2})?|\d{3}))?`;
const LOCAL_TIME = String.raw`\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d{1,9})?)?)?`;
const ZONE = String.raw`(?:Z|[+-]\d{2}(?::?\d{2})?)?(?:\[[A-Za-z0-9_/+-]+\])?`;
const TEMPORAL: Partial<Record<PropertyType, RegExp>> = {
  date: new RegExp(`^${DATE}$`),
  localtime: new RegExp(`^${LOCAL_TIME}$`),
  time: new RegExp(`^${LOCAL_TIME}${ZONE}$`),
  localdatetime: new RegExp(`^${DATE}T${LOCAL_TIME}$`),
  datetime: new RegExp(`^${DATE}(?:T${LOCAL_TIME}${ZONE})?$`),
  duration: /^[+-]?P(?:(?:[+-]?\d+(?:[.,]\d+)?[YMWD])*(?:T(?:[+-]?\d+(?:[.,]\d+)?[HMS])+)?|\d{4}-?\d{2}-?\d{2}T\d{2}:?\d{2}:?\d{2}(?:[.,]\d+)?)$/i,
};

function scalar(column: Column, text: string): unknown {
  const { type } = column;
  switch (type) {
    case 'string':
      return text;
    case 'char':
      if ([...text].length !== 1) throw new Error(`${JSON.stringify(text)} is not one character (type char)`);
      return text;
    case 'long':
    case 'int':
    case 'short':
    case 'byte': {
      const trimmed = text.trim();
      if (!/^-?\d+$/.test(trimmed)) throw new Error(`${JSON.stringify(text)} is not an integer (type ${type})`);
      const value = Number(trimmed);
      const range = INTEGER_RANGE[type];
      if (range !== undefined && (value < -range || value >= range)) throw new Error(`${trimmed} does not fit type ${type}`);
      if (!Number.isSafeInteger(value)) throw new Error(`the integer ${trimmed} is beyond ±9007199254740991, which Snapgraph cannot hold exactly`);
      return value;
    }
    case 'float':
    case 'double': {
      const trimmed = text.trim();
      if (!FLOAT.test(trimmed)) throw new Error(`${JSON.stringify(text)} is not a number (type ${type}; NaN and Infinity cannot be stored)`);
      const value = Number(trimmed.replace(/[fFdD]$/, ''));
      if (!Number.isFinite(value)) throw new Error(`${trimmed} is beyond what a ${type} holds`);
      return value;
    }
    case 'boolean': {
      const trimmed = text.trim();
      if (trimmed === 'true') return true;
      if (trimmed === 'false') return false;
      throw new Error(`${JSON.stringify(text)} is not true or false (type boolean)`);
    }
    case 'point':
      return pointCell(text, column.options);
    default: {
      const trimmed = text.trim();
      if (!TEMPORAL[type]!.test(trimmed)) throw new Error(`${JSON.stringify(text)} is not a ${type} (ISO-8601)`);
      return trimmed;
    }
  }
}


/** `{x:1, y:2, crs:'cartesian'}`, `{latitude:…, longitude:…[, height:…], crs:WGS-84}` (PointValue.parse); the header's `{crs:…}` is the default. */
function pointCell(text: string, options: Record<string, string>): Record<string, unknown> {
  const inner = /^\s*\{(.*)\}\s*$/s.exec(text);
  if (!inner) throw new Error(`${JSON.stringify(text)} is not a point ({x:…, y:…, crs:…} or {latitude:…, longitude:…})`);
  const map: Record<string, unknown> = {};
  if (options.crs !== undefined) map.crs = options.crs;
  if (options.srid !== undefined) map.crs = SRID_CRS[options.srid] ?? options.srid;
  for (const part of inner[1].split(',')) {
    const colon = part.indexOf(':');
    if (colon === -1) throw new Error(`${JSON.stringify(text)} is not a point: ${JSON.stringify(part.trim())} is not key:value`);
    const key = part.slice(0, colon).trim().toLowerCase();
    const value = unquote(part.slice(colon + 1).trim());
    if (key === 'crs') map.crs = value;
    else if (key === 'srid') map.crs = SRID_CRS[value] ?? value;
    else if (['x', 'y', 'z', 'longitude', 'latitude', 'height'].includes(key)) {
      if (!FLOAT.test(value)) throw new Error(`${JSON.stringify(text)} is not a point: its ${key} ${JSON.stringify(value)} is not a number`);
      map[key] = Number(value.replace(/[fFdD]$/, ''));
    } else throw new Error(`${JSON.stringify(text)} is not a point: it has the unknown key ${JSON.stringify(key)}`);
  }
  return pointOf(map, (problem) => {
    throw new Error(`${JSON.stringify(text)} is not a point: ${problem}`);
  });
}
