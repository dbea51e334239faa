// Replicas share one data dir (docs/replicas.md): the instances' live stores are in it. A replica booted on another dir
// (its volume not mounted, a mistyped path) served beside the others on a dir without their stores: every read and
// write of an instance failed (INTERNAL_SERVER_ERROR), and a restore it ran took the store for lost (no safety
// snapshot) and put the new one in its own dir, where no other replica finds it: the instance then failed everywhere.
// So the first boot marks the data dir (deployment.id, a random id, recorded in the metadata database too), and a boot
// on a dir without that mark is refused.
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';

import { SharedDataDirEntity } from '../entities/shared-data-dir.entity';
import { createFileOnce, readTextIfExists } from './durable-fs';

/** The file in the data dir that holds its id. */
export const DATA_DIR_MARK = 'deployment.id';
const SLOT = 'current';
const DATA_DIR_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class DataDirMismatchError extends Error {
  override name = 'DataDirMismatchError';
}

/**
 * Refuses a data dir other than the one the deployment's servers share (metadata in PostgreSQL). The first boot (of a
 * deployment, or of one from a release before the mark) marks its dir and records the mark.
 * @throws DataDirMismatchError saying how to go on, also when the shared dir was lost and an empty one replaces it
 */
export async function assertSharedDataDir(db: DataSource, dataDir: string): Promise<void> {
  const path = join(dataDir, DATA_DIR_MARK);
  const recorded = db.getRepository(SharedDataDirEntity);
  let mark = await readMark(path);
  const row = await recorded.findOneBy({ slot: SLOT });
  if (row) {
    if (mark === row.dataDirId) return;
    throw mismatch(dataDir, path, mark, row.dataDirId);
  }
  let created = false;
  if (mark === null) ({ mark, created } = await createMark(path));
  await db.createQueryBuilder().insert().into(SharedDataDirEntity).values({ slot: SLOT, dataDirId: mark, since: Date.now() }).orIgnore().execute();
  const first = await recorded.findOneByOrFail({ slot: SLOT });
  if (first.dataDirId === mark) return;
  // A server on another dir booted at the same moment, and was recorded first: this dir is left as it was found.
  if (created) await rm(path, { force: true });
  throw mismatch(dataDir, path, created ? null : mark, first.dataDirId);
}

function mismatch(dataDir: string, path: string, found: string | null, expected: string): DataDirMismatchError {
  return new DataDirMismatchError(
    `SNAPGRAPH_DATA_DIR ${dataDir} is not the data dir this deployment's servers share: ` +
      `${found === null ? `it has no ${DATA_DIR_MARK}` : `it is marked ${found}`}, and theirs is marked ${expected}. ` +
      'Give every server the same data dir (a shared volume: is it mounted?). If the shared data dir was lost and this ' +
      `one replaces it, write ${expected} into ${path} and boot again (instances whose stores are gone are then restored ` +
      'from backup storage, to their restore window\'s latest)',
  );
}

async function readMark(path: string): Promise<string | null> {
  const text = await readTextIfExists(path);
  if (text === null) return null;
  const mark = text.trim();
  if (!DATA_DIR_ID.test(mark)) throw new DataDirMismatchError(`${path} does not hold a data dir id (a UUID)`);
  return mark;
}

/** Writes a new mark into place whole (createFileOnce); a server that got there first wins. */
async function createMark(path: string): Promise<{ mark: string; created: boolean }> {
  const mark = randomUUID();
  if (await createFileOnce(path, `${mark}\n`)) return { mark, created: true };
  const winner = await readMark(path);
  if (!winner) throw new DataDirMismatchError(`${path}, which another server was creating, is gone`);
  return { mark: winner, created: false };
}
