// Shared pieces of the benchmarks: an in-process server on a temp data dir, a fast graph builder,
// and samplers for RSS and event-loop delay. Benchmarks print figures; they assert nothing.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadConfig } from '../../src/config/app-config';
import type { InstanceEntity } from '../../src/entities/instance.entity';
import type { GraphStats } from '../../src/graph/records';
import { createLogger } from '../../src/logging/logger';
import { type RunningServer, startServer } from '../../src/server';
import type { PropertyStyle } from './synthetic-graph';

export const BENCH_KEY = 'bench-admin-key-0123456789';

export function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
}

export async function startBenchServer(env: Record<string, string> = {}): Promise<RunningServer & { dataDir: string; cleanup(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'snapgraph-bench-'));
  const config = loadConfig({ ...process.env, PORT: '0', SNAPGRAPH_DATA_DIR: dataDir, SNAPGRAPH_BOOTSTRAP_TOKEN: BENCH_KEY, LOG_LEVEL: 'warn', ...env });
  const server = await startServer(config, createLogger('warn'));
  return {
    ...server,
    dataDir,
    cleanup: async () => {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function gql<T = any>(server: { url: string }, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${BENCH_KEY}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data: T; errors?: { message: string }[] };
  if (body.errors) throw new Error(body.errors.map((e) => e.message).join('; '));
  return body.data;
}

/**
 * Fills an instance quickly: a child process builds the next store generation with the bulk loader (the restore
 * path), then the instance is pointed at it, instead of pushing millions of records through the API.
 */
export async function fillInstance(server: RunningServer & { dataDir: string }, instanceId: string, nodes: number, relationships: number, style: PropertyStyle = 'simple') {
  const { instances } = server.app.services;
  const instance = (await instances.reload(instanceId)) as InstanceEntity;
  const generation = instance.storeGeneration + 1;
  const storePath = join(server.dataDir, 'instances', instanceId, `graph-${generation}.sqlite`);
  const output = execFileSync(process.execPath, [join(__dirname, 'fill-store.js'), storePath, String(nodes), String(relationships), style], {
    maxBuffer: 64 * 1024 * 1024,
  });
  await instances.setState(instance, { storeGeneration: generation, reason: 'bench data loaded' });
  return { stats: JSON.parse(output.toString()) as GraphStats, storePath };
}

/** Samples RSS every 50 ms; peak() is the highest seen since start(). */
export function rssSampler() {
  let peak = 0;
  let timer: NodeJS.Timeout | null = null;
  return {
    start() {
      peak = process.memoryUsage().rss;
      timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
    },
    stop(): number {
      if (timer) clearInterval(timer);
      return Math.max(peak, process.memoryUsage().rss);
    },
  };
}

export function eventLoopMonitor() {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  return {
    start: () => histogram.enable(),
    stop: () => {
      histogram.disable();
      return { p99ms: histogram.percentile(99) / 1e6, maxMs: histogram.max / 1e6 };
    },
  };
}

export const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

export async function waitFor<T>(poll: () => Promise<T | null | undefined>, intervalMs = 50, timeoutMs = 3_600_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await poll();
    if (value) return value;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
