// How often a member of a `state` stream (an operation's progress) may get an event: every member of every such stream
// on this server shares one budget of frames per second, so that the work of sending progress stays the same however
// many subscribers there are, and each of them sees progress less often as they grow in number.
export class ProgressPacing {
  /** Members of `state` streams on this server, kept by SharedSubscription. */
  members = 0;

  constructor(
    /** Progress frames per second, all members together. */
    private readonly framesPerSecond: number,
    /** The shortest interval, whatever the number of members (the runner itself publishes at most every 100 ms). */
    private readonly minIntervalMs: number,
  ) {}

  intervalMs(): number {
    return Math.max(this.minIntervalMs, (this.members * 1000) / this.framesPerSecond);
  }
}
