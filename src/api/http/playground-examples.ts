// The playground's starting document: the main flows as named operations, in the order a newcomer runs them.
// Kept within the default depth and cost limits (test/e2e/playground.test.ts runs every one of them).

export const PLAYGROUND_HEADERS = `{
  "Authorization": "Bearer <key>"
}`;

/** The placeholder the headers editor starts with; the playground sends no Authorization header while it is there. */
export const PLAYGROUND_KEY_PLACEHOLDER = '<key>';

export const PLAYGROUND_VARIABLES = `{
  "instanceId": "paste the id from CreateInstance",
  "snapshotId": "paste the id from TakeSnapshot",
  "operationId": "paste the id from RestoreSnapshot",
  "after": null
}`;

export const PLAYGROUND_DOCUMENT = `# Welcome to the Snapgraph playground.
#
# 1. Headers (below): replace <key> with your API key.
#    Subscriptions send the same key in connection_init.
# 2. Run an operation with ▶ (it lists them), or
#    Ctrl-Enter with the cursor inside one.
# 3. Copy ids from the results into Variables (below).
# Reference: the docs icon (top left) and docs/api.md.

query Viewer {
  viewer { tenantName role apiKeyName }
  instances { id name tier status availability }
}

# An instance with its own graph store.
mutation CreateInstance {
  createInstance(input: { name: "playground", tier: PROFESSIONAL, memoryGB: 1 }) {
    id name tier memoryGB storageGB engineVersion status availability
  }
}

mutation WriteData($instanceId: ID!) {
  createNodes(instanceId: $instanceId, nodes: [
    { labels: ["Person"], properties: { name: "Ada", born: 1815 } }
    { labels: ["Person", "Engineer"], properties: { name: "Grace", born: 1906 } }
  ]) { id labels properties }
}

query ReadData($instanceId: ID!) {
  instance(id: $instanceId) {
    stats { nodeCount relationshipCount labels { name count } }
  }
  nodes(instanceId: $instanceId, first: 20) {
    totalCount
    edges { node { id labels properties } }
  }
}

# Returns at once (PENDING): run WatchSnapshots first
# to see it complete, or poll SnapshotHistory.
mutation TakeSnapshot($instanceId: ID!) {
  createSnapshot(instanceId: $instanceId, description: "taken in the playground") {
    id status profile createdAt
  }
}

subscription WatchSnapshots($instanceId: ID) {
  snapshotUpdated(instanceId: $instanceId) { id status profile sizeBytes completedAt }
}

# Newest first. For the next page, pass
# pageInfo.endCursor as $after.
query SnapshotHistory($instanceId: ID!, $after: String) {
  snapshots(instanceId: $instanceId, first: 10, after: $after, filter: { status: COMPLETED }) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      cursor
      node {
        id profile status createdAt expiresAt sizeBytes sha256
        contents { nodeCount relationshipCount }
      }
    }
  }
}

# A download link, valid 15 minutes by default:
#   curl -o snapshot.backup "<url>"
mutation ExportSnapshot($snapshotId: ID!) {
  exportSnapshot(id: $snapshotId) { url fileName sizeBytes sha256 expiresAt }
}

# Overwrites the instance's data (a PRE_RESTORE
# snapshot is taken first). Then run WatchRestore.
mutation RestoreSnapshot($snapshotId: ID!) {
  restoreSnapshot(snapshotId: $snapshotId, confirm: "RESTORE") {
    id kind status instanceId
  }
}

# The current state first, then every change;
# completes after SUCCEEDED or FAILED.
subscription WatchRestore($operationId: ID!) {
  restoreProgress(operationId: $operationId) {
    status phase progress bytesDone bytesTotal
    error { code message }
  }
}

# During a restore: READ_ONLY, then UNAVAILABLE
# (the swap), then AVAILABLE.
subscription WatchAvailability($instanceId: ID) {
  instanceAvailabilityChanged(instanceId: $instanceId) {
    instanceId previousAvailability availability status reason at
  }
}
`;
