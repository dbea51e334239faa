// The master key wraps every blob's data key. It is loaded once at boot and never leaves
// this object: logs, JSON and util.inspect see only its key id.
import { createCipheriv, createDecipheriv, createHash, createSecretKey, KeyObject, randomBytes } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { inspect } from 'node:util';

import { createFileOnce, fsyncCreatedDirectories, readTextIfExists } from '../storage/durable-fs';
import { CryptoError } from './errors';

export const MASTER_KEY_ENV = 'SNAPGRAPH_MASTER_KEY';
/** Retired master keys, comma-separated: they only decrypt (see loadPreviousMasterKeys). */
export const PREVIOUS_MASTER_KEYS_ENV = 'SNAPGRAPH_PREVIOUS_MASTER_KEYS';
export const MASTER_KEY_BYTES = 32;
/** Key ids are this many bytes, shown as twice as many hex digits. */
export const KEY_ID_BYTES = 8;

const SEAL_NONCE_BYTES = 12;
const SEAL_TAG_BYTES = 16;
const KEY_TEXT_PATTERN = /^[A-Za-z0-9+/_-]{43}=?$/;
const EXPECTED_KEY_TEXT = `the base64 encoding of exactly ${MASTER_KEY_BYTES} bytes (generate one with \`openssl rand -base64 32\`)`;

export class MasterKey {
  /** Hex id of this key, stored in every blob header so that decryption finds the right key. */
  readonly keyId: string;
  readonly #key: KeyObject;

  private constructor(material: Buffer) {
    this.#key = createSecretKey(material);
    // Domain-separated so that the published id is not a plain hash of the key.
    this.keyId = createHash('sha256')
      .update('snapgraph master key id\0')
      .update(material)
      .digest()
      .subarray(0, KEY_ID_BYTES)
      .toString('hex');
  }

  /** @throws CryptoError when `material` is not exactly 32 bytes. */
  static fromBytes(material: Uint8Array): MasterKey {
    if (material.length !== MASTER_KEY_BYTES) {
      throw new CryptoError(`A master key must be exactly ${MASTER_KEY_BYTES} bytes`);
    }
    return new MasterKey(Buffer.from(material));
  }

  static generate(): MasterKey {
    return new MasterKey(randomBytes(MASTER_KEY_BYTES));
  }

  /** Size of `seal(secret)` for a secret of `secretBytes` bytes. */
  static sealedSize(secretBytes: number): number {
    return SEAL_NONCE_BYTES + secretBytes + SEAL_TAG_BYTES;
  }

  /**
   * Encrypts a short secret (a data key) under this key with AES-256-GCM, binding `aad`.
   * Returns nonce ‖ ciphertext ‖ tag. The nonce is random: safe for far more than the number
   * of blobs one key will ever wrap.
   */
  seal(secret: Buffer, aad: Buffer): Buffer {
    const nonce = randomBytes(SEAL_NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: SEAL_TAG_BYTES });
    cipher.setAAD(aad);
    return Buffer.concat([nonce, cipher.update(secret), cipher.final(), cipher.getAuthTag()]);
  }

  /** Reverses `seal`; returns null when the sealed bytes or `aad` do not authenticate. */
  unseal(sealed: Buffer, aad: Buffer): Buffer | null {
    if (sealed.length < SEAL_NONCE_BYTES + SEAL_TAG_BYTES) return null;
    const nonce = sealed.subarray(0, SEAL_NONCE_BYTES);
    const tag = sealed.subarray(sealed.length - SEAL_TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: SEAL_TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    const secret = decipher.update(sealed.subarray(SEAL_NONCE_BYTES, sealed.length - SEAL_TAG_BYTES));
    try {
      decipher.final();
    } catch {
      secret.fill(0);
      return null;
    }
    return secret;
  }

  toJSON(): { keyId: string } {
    return { keyId: this.keyId };
  }

  toString(): string {
    return `MasterKey(${this.keyId})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

export interface LoadMasterKeyOptions {
  dataDir: string;
  /** The value of SNAPGRAPH_MASTER_KEY; unset or blank means "use the key file". */
  envValue?: string;
}

export interface LoadedMasterKey {
  key: MasterKey;
  /** True when no key existed and a new one was written to `path`. */
  generated: boolean;
  /** The key file, when the key came from (or was written to) one. */
  path?: string;
}

export function masterKeyPath(dataDir: string): string {
  return join(dataDir, 'keys', 'master.key');
}

/**
 * Loads the master key: from SNAPGRAPH_MASTER_KEY when set, else from
 * `<dataDir>/keys/master.key`, generating that file (mode 0600, directory 0700) on first boot.
 * Several processes starting at once on one data dir agree on a single generated key.
 *
 * @throws CryptoError naming the variable or file (never its content) when the key is malformed.
 */
export async function loadMasterKey({ dataDir, envValue }: LoadMasterKeyOptions): Promise<LoadedMasterKey> {
  if (envValue !== undefined && envValue.trim() !== '') {
    return { key: parseKeyText(envValue, MASTER_KEY_ENV), generated: false };
  }
  const path = masterKeyPath(dataDir);
  const existing = await readKeyFile(path);
  if (existing) return { key: existing, generated: false, path };
  return generateKeyFile(path);
}

/**
 * The retired keys of SNAPGRAPH_PREVIOUS_MASTER_KEYS (already split and checked by the configuration).
 * @throws CryptoError naming the entry's position (never its text) when one is malformed.
 */
export function loadPreviousMasterKeys(texts: readonly string[]): MasterKey[] {
  return texts.map((text, index) => parseKeyText(text, `Entry ${index + 1} of ${PREVIOUS_MASTER_KEYS_ENV}`));
}

/**
 * Whether `text` is a master key as it is written: base64 of 32 bytes, standard or URL-safe, padded or not, with
 * spaces around it. One rule for the variables (checked by the configuration) and the key file.
 */
export function isMasterKeyText(text: string): boolean {
  const trimmed = text.trim();
  return KEY_TEXT_PATTERN.test(trimmed) && Buffer.from(trimmed, 'base64').length === MASTER_KEY_BYTES;
}

function parseKeyText(text: string, source: string): MasterKey {
  const trimmed = text.trim();
  const bytes = isMasterKeyText(trimmed) ? Buffer.from(trimmed, 'base64') : null;
  if (bytes?.length !== MASTER_KEY_BYTES) {
    throw new CryptoError(`${source} is not a valid master key: expected ${EXPECTED_KEY_TEXT}`);
  }
  const key = MasterKey.fromBytes(bytes);
  bytes.fill(0);
  return key;
}

async function readKeyFile(path: string): Promise<MasterKey | null> {
  const text = await readTextIfExists(path);
  return text === null ? null : parseKeyText(text, `Master key file ${path}`);
}

/**
 * Writes a new key to a private temp file, syncs it, then hard-links it into place: the link
 * fails if another process got there first, and then that process's key is used instead.
 */
async function generateKeyFile(path: string): Promise<LoadedMasterKey> {
  await createPrivateDirectory(dirname(path));
  const material = randomBytes(MASTER_KEY_BYTES);
  try {
    if (await createFileOnce(path, `${material.toString('base64')}\n`)) return { key: MasterKey.fromBytes(material), generated: true, path };
  } finally {
    material.fill(0);
  }
  const winner = await readKeyFile(path);
  if (!winner) throw new CryptoError(`the master key file ${path} another process was creating is gone`);
  return { key: winner, generated: false, path };
}

async function createPrivateDirectory(dir: string): Promise<void> {
  const firstCreated = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (firstCreated === undefined) return;
  // mkdir's mode is filtered by the umask; the keys directory must be exactly 0700.
  await chmod(dir, 0o700);
  await fsyncCreatedDirectories(dir, firstCreated);
}
