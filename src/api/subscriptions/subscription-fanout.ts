// Subscriptions with many subscribers: graphql-ws's `subscribe`. Without it, every subscriber ran its own GraphQL
// execution of every event on the event loop that also runs the work being watched (~66 µs per event per
// subscriber: 5,000 subscribers made a restore 13× slower), then graphql-ws serialised it for each. Here subscribers
// who ask for exactly the same thing share one source stream, one execution and one serialisation per event, which
// each writes to its socket itself, in order, paced and thinned as its stream's kind allows (shared-subscription.ts).
import { type ExecutionArgs, type ExecutionResult, type FieldNode, type FormattedExecutionResult, getOperationAST, subscribe } from 'graphql';
import type { ApiContext } from '../context';
import { ProgressPacing } from './progress-pacing';
import { type FrameSink, SharedSubscription, type StreamKind, type SubscriptionMember } from './shared-subscription';
import { SocketFrames } from './socket-frames';

/** The root fields shared, by kind; any other subscription runs on its own, as graphql-js does. */
const SHARED_FIELDS: Record<string, StreamKind> = {
  restoreProgress: 'state',
  operationProgress: 'state',
  instanceAvailabilityChanged: 'changes',
  snapshotUpdated: 'changes',
};

export interface SubscriptionFanoutOptions {
  /** Progress frames per second, all subscribers of all operations together (see ProgressPacing). */
  progressFramesPerSecond: number;
  /** Where the subscriber of this context writes (its socket and operation id); null: it is not shared. */
  sinkOf(context: ApiContext): FrameSink | null;
  /** What a subscriber is sent of a result (as graphql-ws's onNext would make it). */
  format(result: ExecutionResult): FormattedExecutionResult;
  /**
   * Whether the caller of `context` finds the instance `instanceId`, asked of a subscriber joining a stream of an
   * instance's events that runs already: the stream's own check ran for its first subscriber, before the instance was
   * deleted, perhaps. False (not found, or not known): the subscriber runs on its own, and hears its refusal (NOT_FOUND)
   * as the first one would.
   */
  findsInstance(context: ApiContext, instanceId: string): Promise<boolean>;
}

export const MIN_PROGRESS_INTERVAL_MS = 100;

export class SubscriptionFanout {
  private readonly streams = new Map<string, SharedSubscription>();
  private readonly pacing: ProgressPacing;
  private readonly frames = new SocketFrames();

  constructor(private readonly options: SubscriptionFanoutOptions) {
    this.pacing = new ProgressPacing(options.progressFramesPerSecond, MIN_PROGRESS_INTERVAL_MS);
  }

  /** Shared streams open now (for tests and metrics). */
  get sharedStreams(): number {
    return this.streams.size;
  }

  /**
   * For every message a client sends, before it is handled: during a flood of thousands, the frames clients wait for,
   * if due, go out before the next message rather than after the turn (message-turns.ts) that handles it
   * (SocketFrames.writeDue).
   */
  readonly beforeMessage = (): void => this.frames.writeDue();

  readonly subscribe = (args: ExecutionArgs): ReturnType<typeof subscribe> | SubscriptionMember => {
    const kind = sharedKind(args);
    const context = args.contextValue as ApiContext | undefined;
    const sink = kind && context?.principal ? this.options.sinkOf(context) : null;
    if (!kind || !sink) return subscribe(args);
    const key = shareKey(args, context!);
    const instanceId = this.streams.has(key) ? instanceArgument(args) : null;
    if (instanceId === null) return this.join(key, args, kind, sink);
    return this.options.findsInstance(context!, instanceId).then((found) => (found ? this.join(key, args, kind, sink) : subscribe(args)));
  };

  /** Joins the stream `key` names, made for this subscriber when there is none (any more). */
  private join(key: string, args: ExecutionArgs, kind: StreamKind, sink: FrameSink): SubscriptionMember {
    let stream = this.streams.get(key);
    if (!stream) {
      const created: SharedSubscription = new SharedSubscription(() => subscribe(args), {
        kind,
        pacing: this.pacing,
        frames: this.frames,
        format: this.options.format,
        onRetired: () => {
          if (this.streams.get(key) === created) this.streams.delete(key);
        },
      });
      stream = created;
      this.streams.set(key, stream);
    }
    return stream.join(sink);
  }
}

/** The `instanceId` argument of the subscription's root field (given inline or as a variable), or null. */
function instanceArgument({ document, operationName, variableValues }: ExecutionArgs): string | null {
  const field = getOperationAST(document, operationName)?.selectionSet.selections[0] as FieldNode | undefined;
  const value = field?.arguments?.find((argument) => argument.name.value === 'instanceId')?.value;
  if (value?.kind === 'StringValue') return value.value;
  if (value?.kind === 'Variable') {
    const given = variableValues?.[value.name.value];
    return typeof given === 'string' ? given : null;
  }
  return null;
}

function sharedKind({ document, operationName }: ExecutionArgs): StreamKind | null {
  const operation = getOperationAST(document, operationName);
  if (operation?.operation !== 'subscription') return null;
  const fields = operation.selectionSet.selections;
  // A subscription has exactly one root field (validation); a fragment spread at the root is left to graphql-js.
  if (fields.length !== 1 || fields[0].kind !== 'Field') return null;
  return SHARED_FIELDS[fields[0].name.value] ?? null;
}

/**
 * Who may share a stream: the same tenant and role, the same document, operation and variables. What a subscription
 * shows depends on nothing else of the caller (every resolver scopes by the caller's tenant, and roles only gate
 * mutations), so sharing within a key shows each subscriber exactly what its own execution would, and another
 * tenant never shares a stream, nor the check that let the first subscriber in.
 */
function shareKey({ document, operationName, variableValues }: ExecutionArgs, { principal }: ApiContext): string {
  const text = document.loc?.source.body;
  if (text === undefined) throw new Error('a shared subscription needs the document source (parse without noLocation)');
  return JSON.stringify([principal!.tenantId, principal!.role, operationName ?? null, text, variableValues ?? {}]);
}

