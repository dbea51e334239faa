import assert from 'node:assert/strict';
import {
  createInstance,
  createTenant,
  expectCode,
  expectData,
  fillInstance,
  gql,
  RESTORE_SNAPSHOT,
  serverPerSuite,
  settledOperation,
  statsOf,
  type Subscription,
  subscribe,
  takeSnapshot,
} from '../support';

const CREATE = `mutation ($input: CreateInstanceInput!) {
  createInstance(input: $input) {
    id name tier memoryGB storageGB engineVersion status availability createdAt
    schedule { enabled interval retention keepLatestOnly nextSnapshotAt }
  }
}`;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe('instances', () => {
  const suite = serverPerSuite();
  const create = (input: Record<string, unknown>) => gql(suite.server, CREATE, { input });

  describe('createInstance', () => {
    it('defaults to memoryGB 1 and engine V5, RUNNING and AVAILABLE', async () => {
      const { createInstance: created } = expectData(await create({ name: 'defaults', tier: 'FREE' }));
      assert.equal(created.memoryGB, 1);
      assert.equal(created.storageGB, 2);
      assert.equal(created.engineVersion, 'V5');
      assert.equal(created.status, 'RUNNING');
      assert.equal(created.availability, 'AVAILABLE');
      assert.ok(Math.abs(Date.parse(created.createdAt) - Date.now()) < 60_000, `createdAt ${created.createdAt} is not now`);
      assert.match(created.createdAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    });

    it('takes memoryGB and engineVersion given as null (an unset variable, to many clients) as their defaults', async () => {
      const { createInstance: created } = expectData(await create({ name: 'nulls', tier: 'FREE', memoryGB: null, engineVersion: null }));
      assert.equal(created.memoryGB, 1);
      assert.equal(created.storageGB, 2);
      assert.equal(created.engineVersion, 'V5');
    });

    it('accepts engine V4', async () => {
      const { createInstance: created } = expectData(await create({ name: 'legacy', tier: 'PROFESSIONAL', engineVersion: 'V4' }));
      assert.equal(created.engineVersion, 'V4');
    });

    it('offers only memoryGB 1 on FREE', async () => {
      for (const memoryGB of [2, 4, 64]) {
        expectCode(await create({ name: 'too-big', tier: 'FREE', memoryGB }), 'BAD_USER_INPUT');
      }
    });

    it('sets storageGB to twice memoryGB for every size from 1 to 64', async () => {
      for (const memoryGB of [1, 2, 4, 8, 16, 32, 64]) {
        const { createInstance: created } = expectData(await create({ name: `size-${memoryGB}`, tier: 'BUSINESS_CRITICAL', memoryGB }));
        assert.equal(created.memoryGB, memoryGB);
        assert.equal(created.storageGB, 2 * memoryGB);
      }
    });

    it('refuses a memory size outside 1, 2, 4, … 64 as BAD_USER_INPUT', async () => {
      for (const memoryGB of [0, 3, 5, 128, -1]) {
        expectCode(await create({ name: 'odd-size', tier: 'PROFESSIONAL', memoryGB }), 'BAD_USER_INPUT');
      }
    });

    it('refuses an empty or over-long name as BAD_USER_INPUT', async () => {
      expectCode(await create({ name: '   ', tier: 'FREE' }), 'BAD_USER_INPUT');
      expectCode(await create({ name: 'x'.repeat(101), tier: 'FREE' }), 'BAD_USER_INPUT');
    });

    it('refuses a name the metadata database cannot keep as given (NUL, a lone surrogate) as BAD_USER_INPUT', async () => {
      // PostgreSQL refused the NUL as an internal error; a lone surrogate was stored as U+FFFD, so the name read back
      // was not the one the creation answered.
      for (const name of ['nul\u0000inside', 'lone \ud800 surrogate', 'trailing \udc00']) {
        expectCode(await create({ name, tier: 'FREE' }), 'BAD_USER_INPUT');
      }
      const { createInstance: created } = expectData(await create({ name: 'pair 🧬 and 東京', tier: 'FREE' }));
      assert.equal(created.name, 'pair 🧬 and 東京');
    });

    it('refuses an unknown tier or engine as BAD_USER_INPUT', async () => {
      expectCode(await create({ name: 'x', tier: 'PLATINUM' }), 'BAD_USER_INPUT');
      expectCode(await create({ name: 'x', tier: 'FREE', engineVersion: 'V6' }), 'BAD_USER_INPUT');
      expectCode(await gql(suite.server, `mutation { createInstance(input: { name: "x", tier: GOLD }) { id } }`), 'BAD_USER_INPUT');
    });

    it('refuses a non-integer memoryGB as BAD_USER_INPUT', async () => {
      expectCode(await create({ name: 'x', tier: 'PROFESSIONAL', memoryGB: 1.5 }), 'BAD_USER_INPUT');
      expectCode(await create({ name: 'x', tier: 'PROFESSIONAL', memoryGB: '2' }), 'BAD_USER_INPUT');
    });
  });

  describe('schedule, from the tier defaults', () => {
    const scheduleOf = async (tier: string) => {
      const { createInstance: created } = expectData(await create({ name: `schedule-${tier}`, tier }));
      return { ...created.schedule, createdAt: Date.parse(created.createdAt) };
    };

    it('FREE: no scheduled snapshots, the latest one kept', async () => {
      const schedule = await scheduleOf('FREE');
      assert.deepEqual(
        { enabled: schedule.enabled, interval: schedule.interval, retention: schedule.retention, keepLatestOnly: schedule.keepLatestOnly },
        { enabled: false, interval: null, retention: null, keepLatestOnly: true },
      );
      assert.equal(schedule.nextSnapshotAt, null);
    });

    it('PROFESSIONAL: every P1D, kept P7D, the first one a day after creation', async () => {
      const schedule = await scheduleOf('PROFESSIONAL');
      assert.equal(schedule.enabled, true);
      assert.equal(schedule.interval, 'P1D');
      assert.equal(schedule.retention, 'P7D');
      assert.equal(schedule.keepLatestOnly, false);
      assert.equal(Date.parse(schedule.nextSnapshotAt) - schedule.createdAt, DAY);
    });

    it('BUSINESS_CRITICAL: every PT1H, kept P30D', async () => {
      const schedule = await scheduleOf('BUSINESS_CRITICAL');
      assert.equal(schedule.enabled, true);
      assert.equal(schedule.interval, 'PT1H');
      assert.equal(schedule.retention, 'P30D');
      assert.equal(schedule.keepLatestOnly, false);
      assert.equal(Date.parse(schedule.nextSnapshotAt) - schedule.createdAt, HOUR);
    });

    it('VIRTUAL_DEDICATED_CLOUD: every PT1H, kept up to P60D', async () => {
      const schedule = await scheduleOf('VIRTUAL_DEDICATED_CLOUD');
      assert.equal(schedule.enabled, true);
      assert.equal(schedule.interval, 'PT1H');
      assert.equal(schedule.retention, 'P60D');
      assert.equal(schedule.keepLatestOnly, false);
    });
  });

  describe('instances and instance(id)', () => {
    it('lists instances oldest first, each as created', async () => {
      const first = await createInstance(suite.server, { name: 'listed-1', tier: 'FREE' });
      const second = await createInstance(suite.server, { name: 'listed-2', tier: 'PROFESSIONAL', memoryGB: 4 });
      const { instances } = expectData(await gql(suite.server, `{ instances { id name tier memoryGB storageGB engineVersion status availability createdAt } }`));
      const ids = instances.map((instance: { id: string }) => instance.id);
      assert.ok(ids.indexOf(first.id) < ids.indexOf(second.id));
      assert.deepEqual(instances[ids.indexOf(second.id)], second);
    });

    it('returns null for an id that does not exist, whatever its shape', async () => {
      for (const id of ['00000000-0000-4000-8000-000000000000', 'not-an-id', '1']) {
        const { instance } = expectData(await gql(suite.server, `query ($id: ID!) { instance(id: $id) { id } }`, { id }));
        assert.equal(instance, null);
      }
    });
  });

  describe('deleteInstance', () => {
    const AVAILABILITY = `subscription ($id: ID) {
      instanceAvailabilityChanged(instanceId: $id) { instanceId availability previousAvailability status reason }
    }`;
    const DELETE = `mutation ($id: ID!) { deleteInstance(id: $id) }`;
    type Event = { instanceId: string; availability: string; previousAvailability: string; status: string };
    const eventOf = (result: { data?: any }): Event => result.data.instanceAvailabilityChanged;

    /**
     * A subscription starts a moment after its connection is acknowledged; to know it is live, delete probe instances
     * until one of their events arrives.
     */
    const untilLive = async (subscription: Subscription, key: string) => {
      for (let attempt = 0; attempt < 50; attempt++) {
        const probe = await createInstance(suite.server, { name: 'probe', tier: 'FREE' }, key);
        expectData(await gql(suite.server, DELETE, { id: probe.id }, key));
        const seen = await subscription.waitFor((result) => eventOf(result).instanceId === probe.id, 200).catch(() => null);
        if (seen) return;
      }
      throw new Error('the subscription never delivered an event');
    };

    it("tells the tenant's subscribers the instance became UNAVAILABLE, and nobody else", async () => {
      const instance = await createInstance(suite.server, { name: 'going', tier: 'FREE' });
      const other = await createTenant(suite.server, 'bystander');
      const ownOne = subscribe(suite.server, suite.server.adminKey, AVAILABILITY, { id: instance.id });
      const ownAll = subscribe(suite.server, suite.server.adminKey, AVAILABILITY);
      const bystander = subscribe(suite.server, other.apiKey, AVAILABILITY);
      await untilLive(ownAll, suite.server.adminKey);
      await untilLive(bystander, other.apiKey);

      expectData(await gql(suite.server, DELETE, { id: instance.id }));

      const expected = { instanceId: instance.id, availability: 'UNAVAILABLE', previousAvailability: 'AVAILABLE', status: 'DESTROYING' };
      for (const subscription of [ownAll, ownOne]) {
        const event = eventOf(await subscription.waitFor((result) => eventOf(result).instanceId === instance.id, 5_000));
        assert.deepEqual({ ...event, reason: undefined }, { ...expected, reason: undefined });
      }
      assert.deepEqual(ownOne.results.map((result) => eventOf(result).instanceId), [instance.id], 'the filtered subscription saw other instances');
      assert.ok(
        !bystander.results.some((result) => eventOf(result).instanceId === instance.id),
        "another tenant's subscriber saw the event",
      );
    });

    it('refuses while another instance is being restored or created from one of its snapshots', async function () {
      this.timeout(60_000);
      // Such a restore was accepted; the deletion then removed the snapshot under it, and it FAILED with NOT_FOUND.
      const source = await createInstance(suite.server, { name: 'source', tier: 'PROFESSIONAL', memoryGB: 4 });
      await fillInstance(suite.server, source.id, { nodes: 20_000, relationships: 20_000 });
      const snapshot = await takeSnapshot(suite.server, source.id);
      const target = await createInstance(suite.server, { name: 'target', tier: 'PROFESSIONAL', memoryGB: 4 });
      const restore = expectData(
        await gql(suite.server, RESTORE_SNAPSHOT, { snapshotId: snapshot.id, confirm: 'RESTORE', instanceId: target.id }),
      ).restoreSnapshot;
      expectCode(await gql(suite.server, DELETE, { id: source.id }), 'CONFLICT');
      assert.equal((await settledOperation(suite.server, restore.id)).status, 'SUCCEEDED');
      assert.equal((await statsOf(suite.server, target.id)).nodeCount, 20_000);
      const created = expectData(
        await gql(
          suite.server,
          `mutation ($s: ID!) { createInstanceFromSnapshot(snapshotId: $s, input: { name: "copy", tier: PROFESSIONAL, memoryGB: 4 }) { id currentOperation { id } } }`,
          { s: snapshot.id },
        ),
      ).createInstanceFromSnapshot;
      expectCode(await gql(suite.server, DELETE, { id: source.id }), 'CONFLICT');
      assert.equal((await settledOperation(suite.server, created.currentOperation.id)).status, 'SUCCEEDED');
      // Once they have ended, it goes.
      expectData(await gql(suite.server, DELETE, { id: source.id }));
    });

    it("refuses a subscription to another tenant's instance as NOT_FOUND", async () => {
      const instance = await createInstance(suite.server, { name: 'private', tier: 'FREE' });
      const other = await createTenant(suite.server, 'snoop');
      const snoop = subscribe(suite.server, other.apiKey, AVAILABILITY, { id: instance.id });
      const outcome = await snoop.next(5_000).catch((error: Error) => error);
      const errors = outcome instanceof Error ? (outcome as Error & { graphQLErrors?: any[] }).graphQLErrors : outcome.errors;
      assert.ok(errors, `expected an error, got ${JSON.stringify(outcome)}`);
      assert.equal(errors[0].extensions?.code, 'NOT_FOUND');
    });
  });
});

describe('instances with tier overrides from SNAPGRAPH_CONFIG', () => {
  const suite = serverPerSuite({
    config: {
      tiers: {
        FREE: { memoryGB: [1, 2] },
        PROFESSIONAL: { snapshotInterval: 'PT2S', retention: 'PT10M' },
      },
    },
  });

  it('applies an overridden field and keeps the other defaults', async () => {
    const { createInstance: created } = expectData(
      await gql(suite.server, CREATE, { input: { name: 'fast', tier: 'PROFESSIONAL' } }),
    );
    assert.equal(created.schedule.interval, 'PT2S');
    assert.equal(created.schedule.retention, 'PT10M');
    assert.equal(created.schedule.enabled, true);
  });

  it('offers the memory sizes the config lists', async () => {
    const { createInstance: created } = expectData(await gql(suite.server, CREATE, { input: { name: 'two', tier: 'FREE', memoryGB: 2 } }));
    assert.equal(created.storageGB, 4);
    assert.equal(created.schedule.keepLatestOnly, true);
  });
});
