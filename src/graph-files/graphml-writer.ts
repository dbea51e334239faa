// Writes a snapshot as apoc.export.graphml.all writes a graph with useTypes:true (XmlGraphMLWriter): typed <key>
// declarations (a GraphML key has one type, so the snapshot is read twice: once for the keys and their types, once to
// write), then one line per node and per edge. What GraphML cannot carry faithfully is refused naming the record:
// nulls, lists holding nulls, lists or maps, or values of mixed types, a property whose type differs between records,
// strings of only whitespace (APOC's reader stores them as ""),
// labels holding ':' (APOC splits labels at ':'), properties named like the labels of a node or the label of an edge,
// and characters XML 1.0 has no way to write. Maps (not Neo4j values) are written as JSON on a key marked
// snapgraph.type="map", so that Snapgraph reads them back as maps.
import { Readable } from 'node:stream';
import { encodeStrings } from '../runtime/text-lines';
import { cypherNumber } from './cypher-values';
import { unexportableValueError } from './graph-file-error';
import type { GraphFileSource } from './graph-file-format';
import { jsonKeepingDoubles } from './json-values';
import { escapeXml, hasNonXmlChar } from './xml-tokens';

/** The attribute on a key that marks values GraphML has no type for (maps), written as JSON. */
export const SNAPGRAPH_TYPE_ATTRIBUTE = 'snapgraph.type';

type Scalar = 'string' | 'long' | 'double' | 'boolean';
/** A property's type: a scalar, a list of one (element null: only empty lists seen so far), or a map. */
type ValueType = { kind: Scalar } | { kind: 'list'; element: Scalar | null } | { kind: 'map' };
type Owner = 'node' | 'edge';

const HEADER =
  '<?xml version="1.0" encoding="UTF-8"?>\n' +
  '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ' +
  'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n';

export function writeGraphml(source: GraphFileSource): Readable {
  return Readable.from(graphmlText(source), { objectMode: false });
}

async function* graphmlText(source: GraphFileSource): AsyncGenerator<string | Buffer> {
  const keys = await collectKeys(source);
  let text = HEADER;
  for (const owner of ['node', 'edge'] as const) {
    for (const [name, type] of keys[owner]) text += keyLine(owner, name, type);
  }
  yield `${text}<graph id="G" edgedefault="directed">\n`;
  for await (const batch of source.batches()) {
    const parts: string[] = [];
    for (const record of batch) {
      if (record.kind === 'node') {
        const { id, labels, properties } = record.node;
        const joined = labels.length > 0 ? escapeXml(`:${labels.join(':')}`, true) : '';
        parts.push(`<node id="n${id}"${joined ? ` labels="${joined}"><data key="labels">${joined}</data>` : '>'}${dataOf(properties, keys.node)}</node>\n`);
      } else {
        const { id, type, startNodeId, endNodeId, properties } = record.relationship;
        const label = escapeXml(type, true);
        parts.push(`<edge id="e${id}" source="n${startNodeId}" target="n${endNodeId}" label="${label}"><data key="label">${label}</data>${dataOf(properties, keys.edge)}</edge>\n`);
      }
    }
    yield encodeStrings(parts);
  }
  yield '</graph>\n</graphml>\n';
}

/** Every property name of nodes and of edges with its one type, in the order first seen; checks what cannot be written. */
async function collectKeys(source: GraphFileSource): Promise<Record<Owner, Map<string, ValueType>>> {
  const keys = { node: new Map<string, ValueType>(), edge: new Map<string, ValueType>() };
  let labelled = false;
  let edges = false;
  for await (const batch of source.batches()) {
    for (const record of batch) {
      if (record.kind === 'node') {
        const { id, labels, properties } = record.node;
        const what = `node ${id}`;
        for (const label of labels) {
          if (label.includes(':') || label.trim() !== label) refuse(what, `has the label ${JSON.stringify(label)}; GraphML labels are written as ":A:B" and read back split at ':' and trimmed`);
          if (hasNonXmlChar(label)) refuse(what, `has the label ${JSON.stringify(label)}, which holds a character XML cannot carry`);
        }
        labelled ||= labels.length > 0;
        if ('labels' in properties) refuse(`${what}'s property "labels"`, 'has the name GraphML uses for the labels of a node');
        addTypes(keys.node, properties, what);
      } else {
        const { id, type, properties } = record.relationship;
        const what = `relationship ${id}`;
        if (hasNonXmlChar(type)) refuse(what, `has the type ${JSON.stringify(type)}, which holds a character XML cannot carry`);
        edges = true;
        if ('label' in properties) refuse(`${what}'s property "label"`, 'has the name GraphML uses for the type of an edge');
        addTypes(keys.edge, properties, what);
      }
    }
  }
  // The labels (and an edge's label) are keys of their own, declared first.
  const withFirst = (first: string | null, rest: Map<string, ValueType>) =>
    new Map<string, ValueType>([...(first ? [[first, { kind: 'string' }] as [string, ValueType]] : []), ...rest]);
  return { node: withFirst(labelled ? 'labels' : null, keys.node), edge: withFirst(edges ? 'label' : null, keys.edge) };
}

function addTypes(keys: Map<string, ValueType>, properties: Record<string, unknown>, owner: string): void {
  for (const name in properties) {
    const what = `${owner}'s property ${JSON.stringify(name)}`;
    if (hasNonXmlChar(name)) refuse(what, 'has a name holding a character XML cannot carry');
    // U+0000, Neo4j's other forbidden character in a name, is no XML character either.
    if (name === '') refuse(what, 'has an empty name, which Neo4j refuses as a property key (apoc.import.graphml could not set it)');
    const type = typeOf(properties[name], what);
    const known = keys.get(name);
    if (!known) {
      keys.set(name, type);
      continue;
    }
    const merged = merge(known, type);
    if (!merged) {
      refuse(what, `is ${describe(type)} where another ${owner.split(' ')[0]}'s "${name}" is ${describe(known)}; a GraphML key has one type`);
    }
    keys.set(name, merged);
  }
}

function typeOf(value: unknown, what: string): ValueType {
  if (value === null) refuse(what, 'is null, which GraphML cannot carry');
  if (typeof value === 'string') {
    if (hasNonXmlChar(value)) refuse(what, 'holds a character XML 1.0 cannot carry (a control character or a lone surrogate)');
    // XmlGraphMLReader skips character data that is only whitespace and sets "" in its place: Neo4j would hold another value.
    if (/^[ \t\n\r]+$/.test(value)) refuse(what, 'is only whitespace, which apoc.import.graphml reads as the empty string');
    return { kind: 'string' };
  }
  if (typeof value === 'boolean') return { kind: 'boolean' };
  if (typeof value === 'number') return { kind: numberKind(value) };
  if (Array.isArray(value)) {
    let element: Scalar | null = null;
    for (const item of value) {
      if (item === null) refuse(what, 'is a list holding null, which GraphML cannot carry');
      if (typeof item === 'object') refuse(what, `is a list holding ${Array.isArray(item) ? 'lists' : 'maps'}, which GraphML cannot carry`);
      const kind: Scalar = typeof item === 'number' ? numberKind(item) : (typeof item as Scalar);
      const merged: Scalar | null = element === null ? kind : mergeScalar(element, kind);
      if (!merged) refuse(what, 'is a list of mixed types, which GraphML cannot carry (an attr.list has one type)');
      element = merged;
    }
    return { kind: 'list', element };
  }
  return { kind: 'map' };
}

const numberKind = (value: number): Scalar => (Number.isSafeInteger(value) ? 'long' : 'double');

/** Whole numbers and fractions are both numbers in Snapgraph: together they are doubles. */
function mergeScalar(a: Scalar, b: Scalar): Scalar | null {
  if (a === b) return a;
  return (a === 'long' || a === 'double') && (b === 'long' || b === 'double') ? 'double' : null;
}

function merge(a: ValueType, b: ValueType): ValueType | null {
  if (a.kind === 'list' && b.kind === 'list') {
    if (a.element === null || b.element === null) return { kind: 'list', element: a.element ?? b.element };
    const element = mergeScalar(a.element, b.element);
    return element ? { kind: 'list', element } : null;
  }
  if (a.kind === 'list' || b.kind === 'list') return null;
  if (a.kind === 'map' || b.kind === 'map') return a.kind === b.kind ? a : null;
  const kind = mergeScalar(a.kind, b.kind);
  return kind ? { kind } : null;
}

function describe(type: ValueType): string {
  if (type.kind === 'list') return `a list${type.element ? ` of ${type.element}` : ''}`;
  return type.kind === 'map' ? 'a map' : `a ${type.kind}`;
}

function keyLine(owner: Owner, name: string, type: ValueType): string {
  const id = escapeXml(name, true);
  let typed: string;
  if (type.kind === 'list') typed = `attr.type="string" attr.list="${type.element ?? 'string'}"`;
  else if (type.kind === 'map') typed = `attr.type="string" ${SNAPGRAPH_TYPE_ATTRIBUTE}="map"`;
  else typed = `attr.type="${type.kind}"`;
  return `<key id="${id}" for="${owner}" attr.name="${id}" ${typed}/>\n`;
}

function dataOf(properties: Record<string, unknown>, keys: Map<string, ValueType>): string {
  let text = '';
  for (const name in properties) {
    text += `<data key="${escapeXml(name, true)}">${escapeXml(valueText(properties[name], keys.get(name)!))}</data>`;
  }
  return text;
}

/** As FormatUtils.toXmlString: numbers as Java prints them, lists as JSON; maps as JSON too (the marked key). */
function valueText(value: unknown, type: ValueType): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return cypherNumber(value, type.kind === 'double');
  if (typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) {
    const element = type.kind === 'list' ? type.element : null;
    return `[${value.map((item) => (typeof item === 'number' ? cypherNumber(item, element === 'double') : JSON.stringify(item))).join(',')}]`;
  }
  return jsonKeepingDoubles(value);
}

function refuse(what: string, problem: string): never {
  throw unexportableValueError('GRAPHML', what, problem);
}
