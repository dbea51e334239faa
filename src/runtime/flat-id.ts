// Ids that live as long as a connection or a subscription. Node's randomUUID() builds its string by concatenation,
// and V8 keeps such a string as the tree of pieces it was built from for as long as it lives: 15 strings, ~490 B of
// heap for 36 characters (measured, Node 20), which the GC copies and marks with everything else that lives. With
// 10,000 WebSocket subscribers that is an id per connection and one per subscription. Copied once into a flat string
// it is ~67 B.
import { randomUUID } from 'node:crypto';

/** A random UUID (v4), stored flat. */
export function newFlatId(): string {
  // ASCII only, so latin1 gives back exactly the same characters, in one flat string.
  return Buffer.from(randomUUID(), 'latin1').toString('latin1');
}
