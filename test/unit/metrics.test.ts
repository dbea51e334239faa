// The Prometheus metrics' own bookkeeping: what a scrape shows before anything happened, and how an end is counted.
import assert from 'node:assert/strict';
import { OPERATION_KINDS } from '../../src/entities/operation.entity';
import { type InstanceCounts, Metrics } from '../../src/observability/metrics';

const seriesOf = (body: string, name: string) => body.split('\n').filter((line) => line.startsWith(`${name}{`));

describe('metrics', () => {
  it('scrapes a zero series of snapgraph_operations_total for every operation kind and outcome before any ran', async () => {
    const { body } = await new Metrics().expose();
    const series = seriesOf(body, 'snapgraph_operations_total');
    for (const kind of OPERATION_KINDS) {
      for (const outcome of ['succeeded', 'failed', 'cancelled']) {
        assert.ok(series.includes(`snapgraph_operations_total{kind="${kind}",outcome="${outcome}"} 0`), `${kind} ${outcome}: ${series.join('\n')}`);
      }
    }
  });

  it('counts a cancelled operation as cancelled, not failed', async () => {
    const metrics = new Metrics();
    metrics.recordOperation('EXPORT', 'CANCELLED', 1200);
    metrics.recordOperation('RESTORE_TO_POINT_IN_TIME', 'FAILED', 10);
    const series = seriesOf((await metrics.expose()).body, 'snapgraph_operations_total');
    assert.ok(series.includes('snapgraph_operations_total{kind="EXPORT",outcome="cancelled"} 1'));
    assert.ok(series.includes('snapgraph_operations_total{kind="EXPORT",outcome="failed"} 0'));
    assert.ok(series.includes('snapgraph_operations_total{kind="RESTORE_TO_POINT_IN_TIME",outcome="failed"} 1'));
  });

  it('starts no second count of the instances while one has not answered: the next scrapes wait for it', async function () {
    this.timeout(20_000);
    const metrics = new Metrics();
    let calls = 0;
    let answer: ((counts: InstanceCounts) => void) | undefined;
    const failures: unknown[] = [];
    metrics.countInstancesWith(
      () => (++calls === 1 ? new Promise((resolve) => (answer = resolve)) : Promise.resolve({ AVAILABLE: 3 })),
      (error) => failures.push(error),
    );
    // The table locked: each scrape gives up on the count, which goes on holding its database connection.
    for (let scrape = 0; scrape < 2; scrape++) assert.doesNotMatch((await metrics.expose()).body, /^snapgraph_instances\{/m, 'waited for the count under way');
    assert.equal(calls, 1, 'one count under way, not one per scrape');
    assert.equal(failures.length, 2);
    // Once it answered, the next scrape counts anew.
    answer!({ AVAILABLE: 2 });
    await new Promise(setImmediate);
    assert.match((await metrics.expose()).body, /^snapgraph_instances\{availability="AVAILABLE"\} 3$/m);
    assert.equal(calls, 2);
  });
});
