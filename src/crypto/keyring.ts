// The master keys this process can decrypt with, and the one it encrypts with. Holding old
// keys beside the current one is what makes key rotation possible.
import { inspect } from 'node:util';

import { UnknownKeyError } from './errors';
import { MasterKey } from './master-key';

export class Keyring {
  readonly #keys = new Map<string, MasterKey>();
  #current: MasterKey;

  /** @param current encrypts new blobs; `previous` keys only decrypt older ones. */
  constructor(current: MasterKey, previous: Iterable<MasterKey> = []) {
    for (const key of previous) this.#keys.set(key.keyId, key);
    this.#keys.set(current.keyId, current);
    this.#current = current;
  }

  get current(): MasterKey {
    return this.#current;
  }

  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  has(keyId: string): boolean {
    return this.#keys.has(keyId);
  }

  /** @throws UnknownKeyError when no key with this id is configured. */
  get(keyId: string): MasterKey {
    const key = this.#keys.get(keyId);
    if (!key) throw new UnknownKeyError(keyId);
    return key;
  }

  /** Adds a key for decryption; with `makeCurrent`, new blobs are encrypted under it. */
  add(key: MasterKey, { makeCurrent = false }: { makeCurrent?: boolean } = {}): void {
    this.#keys.set(key.keyId, key);
    if (makeCurrent) this.#current = key;
  }

  toJSON(): { current: string; keyIds: string[] } {
    return { current: this.#current.keyId, keyIds: this.keyIds };
  }

  [inspect.custom](): string {
    return `Keyring(current ${this.#current.keyId}, ${this.#keys.size} key(s))`;
  }
}
