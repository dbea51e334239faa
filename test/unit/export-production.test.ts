// Export copies produced once per process: callers that come together share one production, which stops only when
// every one of them has stopped waiting (an exportSnapshotTo cancelled while a download waits for the same copy).
import assert from 'node:assert/strict';
import type { DataSource } from 'typeorm';
import type { ChunkStore } from '../../src/chunks';
import type { GraphStoreProvider } from '../../src/graph/graph-store';
import { createLogger } from '../../src/logging/logger';
import { Metrics } from '../../src/observability/metrics';
import { BackupService } from '../../src/services/backup.service';
import type { ChangeLogService } from '../../src/services/change-log.service';
import type { InstanceService } from '../../src/services/instance.service';
import type { EncryptedBlobStore } from '../../src/storage/encrypted-blob-store';

type Copy = { sizeBytes: number; sha256: string };
type ProduceOnce = (key: string, signal: AbortSignal | undefined, produce: (shared: AbortSignal) => Promise<Copy>) => Promise<Copy>;

describe('producing an export copy', () => {
  let produceOnce: ProduceOnce;
  /** Each production started, with its shared signal; the test settles it when it likes. */
  let productions: { shared: AbortSignal; finish: (copy: Copy) => void; fail: (error: Error) => void }[];
  const produce = (shared: AbortSignal) =>
    new Promise<Copy>((finish, fail) => {
      productions.push({ shared, finish, fail });
      shared.addEventListener('abort', () => fail(shared.reason as Error), { once: true });
    });
  const copy = { sizeBytes: 10, sha256: 'ab'.repeat(32) };

  beforeEach(() => {
    productions = [];
    const log = { onShipped: () => undefined, onDamaged: () => undefined } as unknown as ChangeLogService;
    const backups = new BackupService({ getRepository: () => ({}) } as unknown as DataSource, {} as ChunkStore, {} as EncryptedBlobStore, {} as GraphStoreProvider, {} as InstanceService, log, createLogger('silent'), new Metrics(), {
      scratchDir: '/nonexistent',
      collectGraceMs: 1000,
      listBlobs: async function* () {},
    });
    produceOnce = (backups as unknown as { produceOnce: ProduceOnce }).produceOnce.bind(backups);
  });

  it('gives callers that come while it is under way the same copy, produced once', async () => {
    const first = produceOnce('k', undefined, produce);
    const second = produceOnce('k', new AbortController().signal, produce);
    assert.equal(productions.length, 1);
    productions[0].finish(copy);
    assert.deepEqual(await Promise.all([first, second]), [copy, copy]);
    // Once done, a later caller (the copy was removed meanwhile) produces it again.
    const third = produceOnce('k', undefined, produce);
    assert.equal(productions.length, 2);
    productions[1].finish(copy);
    assert.deepEqual(await third, copy);
  });

  it('goes on for the others when one caller stops waiting, and stops when the last one does, once it has cleaned up', async () => {
    const [a, b] = [new AbortController(), new AbortController()];
    const slowToStop = (shared: AbortSignal) => new Promise<Copy>((finish, fail) => productions.push({ shared, finish, fail }));
    const first = produceOnce('k', a.signal, slowToStop);
    const second = produceOnce('k', b.signal, slowToStop);
    a.abort(new Error('cancelled a'));
    await assert.rejects(first, /cancelled a/);
    assert.equal(productions[0].shared.aborted, false);
    let secondSettled = false;
    const settled = second.catch(() => undefined).finally(() => (secondSettled = true));
    b.abort(new Error('cancelled b'));
    assert.equal(productions[0].shared.aborted, true);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(secondSettled, false, 'the last caller did not wait for the production to stop');
    productions[0].fail(productions[0].shared.reason as Error);
    await settled;
    await assert.rejects(second, /cancelled b/);
    assert.equal(productions.length, 1);
  });

  it('keeps producing for a caller without a signal when every other one stops', async () => {
    const stopped = new AbortController();
    const cancelled = produceOnce('k', stopped.signal, produce);
    const kept = produceOnce('k', undefined, produce);
    stopped.abort(new Error('cancelled'));
    await assert.rejects(cancelled, /cancelled/);
    assert.equal(productions[0].shared.aborted, false);
    productions[0].finish(copy);
    assert.deepEqual(await kept, copy);
  });

  it('passes a failure of the production to every caller', async () => {
    const callers = [produceOnce('k', undefined, produce), produceOnce('k', new AbortController().signal, produce)];
    productions[0].fail(new Error('no space left'));
    for (const caller of callers) await assert.rejects(caller, /no space left/);
  });
});
