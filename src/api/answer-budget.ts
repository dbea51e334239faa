// How much stored data one GraphQL operation's answer may carry. The cost limit (query-limits.ts) counts items, not
// their size: a page is bounded by PAGE_BYTES, and an update's answer by UPDATE_ANSWER_BYTES, but each alias on its
// own. 50 aliases of `nodes(first: 1)` over a 4 MiB node answered 210 MB; over an 11 MiB one the server held 1.8 GB,
// then failed the request; a few larger ones at once would have ended the process, for every tenant. 50 aliases of
// `updateNodes { properties }` likewise.
import { badInput } from '../errors/app-error';

/** Bytes of stored data (labels or types, and properties, as stored) one operation's answer carries at most. */
export const ANSWER_BYTES = 64 * 1024 * 1024;

/**
 * The bytes an operation's answer has left, spent by its graph reads one at a time (graphql-js runs a query's fields
 * side by side: each would see the whole budget). A read is given what is left as its bound, and an item larger than
 * that still comes alone, as with a page's own bound: an answer holds at most the budget and one item more. Once it is
 * spent, the next read is refused, and the fields before it keep their data.
 */
export class AnswerBudget {
  private left: number;
  private turn: Promise<unknown> = Promise.resolve();

  constructor(private readonly limitBytes = ANSWER_BYTES) {
    this.left = limitBytes;
  }

  /** Runs `read`, after the reads before it, bounded by what is left (the store bounds it further); it says what it spent. */
  spend<T>(read: (maxBytes: number) => Promise<{ value: T; bytes: number }>): Promise<T> {
    const run = this.turn.then(async () => {
      if (this.left <= 0) {
        throw badInput(
          `this operation's answer already holds ${this.limitBytes - this.left} bytes of stored data, past this server's ` +
            `${this.limitBytes} for one answer: ask for the rest in another request (from the page's endCursor), or use fewer aliases`,
        );
      }
      const { value, bytes } = await read(this.left);
      this.left -= bytes;
      return value;
    });
    this.turn = run.catch(() => undefined);
    return run;
  }
}
