// Every foreign graph file format Snapgraph reads or writes, in the order detection tries them.
import { apocCypherFormat } from './apoc-cypher-format';
import { apocJsonFormat } from './apoc-json-format';
import { graphmlFormat } from './graphml-format';
import type { GraphFileFormat, GraphFileKind } from './graph-file-format';
import { neo4jAdminCsvFormat } from './neo4j-admin-csv-format';

// Adding a format is one line here. Formats that are a tar of files (NEO4J_ADMIN_CSV) go first: detection sees the
// tar itself before a single-file format is looked for inside it.
export const GRAPH_FILE_FORMATS: readonly GraphFileFormat[] = [neo4jAdminCsvFormat, apocJsonFormat, apocCypherFormat, graphmlFormat];

/** The format a file starting with `head` is in, if any. */
export function detectGraphFileFormat(head: Buffer): GraphFileFormat | undefined {
  return GRAPH_FILE_FORMATS.find((format) => format.detect(head));
}

export function graphFileFormat(kind: GraphFileKind | string): GraphFileFormat | undefined {
  return GRAPH_FILE_FORMATS.find((format) => format.kind === kind);
}
