/**
 * `bytes` as a view of an ArrayBuffer of its own, copying when it is a slice of a larger one (Node's Buffer pool, a
 * read segment). Posting a view to a worker clones its whole ArrayBuffer, and transferring a shared one would detach
 * it for everyone else.
 */
export function ownedBytes(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : new Uint8Array(bytes);
}
