// GraphML files for tests, in the shape apoc.export.graphml.all writes them (docs/neo4j-files.md, GraphML).

export const GRAPHML_HEADER =
  '<?xml version="1.0" encoding="UTF-8"?>\n' +
  '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ' +
  'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n';

/** A GraphML document: `keys` lines, then `body` lines inside <graph>; one element per line, as APOC writes. */
export function graphmlDocument(keys: string[], body: string[]): string {
  return `${GRAPHML_HEADER}${keys.map((k) => `${k}\n`).join('')}<graph id="G" edgedefault="directed">\n${body.map((b) => `${b}\n`).join('')}</graph>\n</graphml>\n`;
}

/** `<key>` as APOC declares it with useTypes (attr.list: the element type of an array property). */
export function graphmlKey(name: string, owner: 'node' | 'edge', type: string, list?: string): string {
  return `<key id="${name}" for="${owner}" attr.name="${name}" attr.type="${type}"${list ? ` attr.list="${list}"` : ''}/>`;
}

/** `<node>` with its labels (attribute and data) and data in the given order; values already XML-escaped. */
export function graphmlNode(id: string, labels: string[], data: Record<string, string> = {}): string {
  const joined = labels.map((l) => `:${l}`).join('');
  const labelled = joined ? ` labels="${joined}"><data key="labels">${joined}</data>` : '>';
  return `<node id="${id}"${labelled}${Object.entries(data).map(([k, v]) => `<data key="${k}">${v}</data>`).join('')}</node>`;
}

export function graphmlEdge(id: string, source: string, target: string, type: string, data: Record<string, string> = {}): string {
  return (
    `<edge id="${id}" source="${source}" target="${target}" label="${type}"><data key="label">${type}</data>` +
    `${Object.entries(data).map(([k, v]) => `<data key="${k}">${v}</data>`).join('')}</edge>`
  );
}
