// An instance store as the releases before the change log created it: its tables and indexes, no data. Tests of the
// upgrade write such stores and add their rows.
export const EARLIER_RELEASE_STORE_TABLES = `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE nodes (id INTEGER PRIMARY KEY, labels TEXT NOT NULL, properties TEXT NOT NULL);
  CREATE TABLE node_labels (label TEXT NOT NULL, node_id INTEGER NOT NULL, PRIMARY KEY (label, node_id)) WITHOUT ROWID;
  CREATE TABLE relationships (id INTEGER PRIMARY KEY, type TEXT NOT NULL, start_id INTEGER NOT NULL, end_id INTEGER NOT NULL, properties TEXT NOT NULL);
  CREATE TABLE counts (kind TEXT NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (kind, name)) WITHOUT ROWID;
  CREATE INDEX rel_by_type ON relationships (type, id);
  CREATE INDEX rel_by_start ON relationships (start_id);
  CREATE INDEX rel_by_end ON relationships (end_id);`;
