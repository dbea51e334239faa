import assert from 'node:assert/strict';
import { isOperationPhase, OPERATION_PHASES, POINT_OF_NO_RETURN } from '../../src/jobs/operation-phases';
import { cancellation, isBehind, type OperationView } from '../../src/services/operation.service';

const state = (fields: Partial<OperationView>): OperationView =>
  ({ status: 'RUNNING', phase: 'loading', attempt: 1, bytesDone: 0, ...fields }) as OperationView;

describe('cancellation', () => {
  it('cancels QUEUED operations and RUNNING ones before the point of no return', () => {
    assert.equal(cancellation({ status: 'QUEUED', phase: 'queued' }), 'cancel');
    for (const phase of OPERATION_PHASES.filter((name) => name !== POINT_OF_NO_RETURN && name !== 'done')) {
      assert.equal(cancellation({ status: 'RUNNING', phase }), 'cancel', phase);
    }
  });

  it('is CONFLICT once a restore is swapping, and for operations that have ended', () => {
    assert.equal(POINT_OF_NO_RETURN, 'swapping');
    assert.equal(cancellation({ status: 'RUNNING', phase: 'swapping' }), 'conflict');
    assert.equal(cancellation({ status: 'SUCCEEDED', phase: 'done' }), 'conflict');
    assert.equal(cancellation({ status: 'FAILED', phase: 'loading' }), 'conflict');
  });

  it('answers a CANCELLED operation as it is', () => {
    assert.equal(cancellation({ status: 'CANCELLED', phase: 'loading' }), 'already-cancelled');
  });
});

describe('operation phases', () => {
  it('are one list, in order, with the point of no return before done', () => {
    assert.ok(isOperationPhase('preparing'));
    assert.ok(!isOperationPhase('restoring'));
    assert.ok(OPERATION_PHASES.indexOf(POINT_OF_NO_RETURN) === OPERATION_PHASES.indexOf('done') - 1);
  });
});

describe('ordering of operation states (stale events never move a stream back)', () => {
  it('keeps bytes moving forward within an attempt', () => {
    assert.ok(isBehind(state({ bytesDone: 5 }), state({ bytesDone: 10 })));
    assert.ok(!isBehind(state({ bytesDone: 10 }), state({ bytesDone: 5 })));
  });

  it('takes a hand-back to the queue, and the next attempt starting over, as news', () => {
    const running = state({ attempt: 1, bytesDone: 900 });
    const handedBack = state({ status: 'QUEUED', phase: 'queued', attempt: 1, bytesDone: 0 });
    const secondRun = state({ attempt: 2, bytesDone: 10 });
    assert.ok(!isBehind(handedBack, running));
    assert.ok(!isBehind(secondRun, handedBack));
    assert.ok(isBehind(running, secondRun));
    assert.ok(isBehind(running, handedBack), 'a late event of the interrupted run');
  });

  it('never goes back from an end', () => {
    for (const end of ['SUCCEEDED', 'FAILED', 'CANCELLED'] as const) {
      assert.ok(isBehind(state({ attempt: 3 }), state({ status: end, attempt: 1 })), end);
      assert.ok(!isBehind(state({ status: end, attempt: 1 }), state({ attempt: 3 })), end);
    }
  });

  it('does not take the first run for a step back from the queued row', () => {
    assert.ok(!isBehind(state({ attempt: 1 }), state({ status: 'QUEUED', phase: 'queued', attempt: 0 })));
  });
});
