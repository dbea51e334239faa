// What operators and their tooling poll: GET /healthz (the process serves), GET /readyz (its database and
// stores answer; a load balancer sends traffic only then) and GET /metrics (Prometheus text).
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RequestHandler, Router } from 'express';
import type { Logger } from '../logging/logger';
import type { Metrics } from './metrics';

/** Named checks; each resolves when its dependency works and throws (or hangs) when it does not. */
export type ReadinessChecks = Record<string, () => Promise<unknown>>;

const CHECK_TIMEOUT_MS = 3_000;

export interface OperatorEndpointsOptions {
  /** False while booting and once shutdown began: both probes answer 503. */
  isServing: () => boolean;
  readiness: ReadinessChecks;
  metrics: Metrics;
  logger: Logger;
}

export function operatorEndpoints({ isServing, readiness, metrics, logger }: OperatorEndpointsOptions): Router {
  const router = Router();
  const noStore: RequestHandler = (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  };

  router.get('/healthz', noStore, (_req, res) => {
    res.status(isServing() ? 200 : 503).json({ status: isServing() ? 'ok' : 'starting' });
  });

  router.get('/readyz', noStore, async (_req, res) => {
    const checks = await runChecks(readiness);
    const ready = isServing() && Object.values(checks).every((check) => check.ok);
    if (!ready) logger.warn({ checks, serving: isServing() }, 'not ready');
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', serving: isServing(), checks });
  });

  router.get('/metrics', noStore, async (_req, res) => {
    const { contentType, body } = await metrics.expose();
    res.setHeader('Content-Type', contentType).send(body);
  });
  return router;
}

type CheckResult = { ok: true; ms: number } | { ok: false; ms: number; error: string };

async function runChecks(checks: ReadinessChecks): Promise<Record<string, CheckResult>> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]): Promise<[string, CheckResult]> => {
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          check(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
          }),
        ]);
        return [name, { ok: true, ms: Date.now() - started }];
      } catch (error) {
        return [name, { ok: false, ms: Date.now() - started, error: error instanceof Error ? error.message : String(error) }];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return Object.fromEntries(entries);
}

/**
 * A directory the server must write to (blobs, instance stores), made at boot: creates and removes a small file, which
 * also catches read-only mounts, and a directory gone (made again here, it was an empty one, reported ready while
 * every store in it was missing). The name ends like a blob store temp file, so a crash leftover is swept at boot.
 */
export async function probeWritableDirectory(dir: string): Promise<void> {
  const probe = join(dir, `.readyz-probe.tmp-${randomBytes(8).toString('hex')}`);
  try {
    await writeFile(probe, 'ok');
  } finally {
    await rm(probe, { force: true });
  }
}
