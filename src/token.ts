/**
 * Callback tokens (spec 4): base64url of `{ node, anchor, id, sig }`, where
 * `sig` is an HMAC-SHA256 over the other fields. Signed with the first secret,
 * verified against all of them (rotation), compared in constant time.
 *
 * @module
 */

import {
  createHmac,
  createSecretKey,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';

/** The decoded fields of a token. Outside services may read `node` and `anchor` for routing. */
export interface CallbackTokenFields {
  /** The engine instance that owns the callback. */
  node: string;
  /** The anchor the callback was created at. */
  anchor: string;
  /** The callbackId (128 random bits, base64url). */
  id: string;
  /** HMAC-SHA256 over node, anchor and id, base64url. */
  sig: string;
  /** Set on a token wrapped for transport across a hop. */
  useTransport?: boolean;
  /** The hops of a wrapped token. */
  transport?: unknown[];
}

/** Upper bound on an encoded token's length; longer input is rejected before decoding. */
export const MAX_TOKEN_LENGTH = 4096;

const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;
const SIG_BYTES = 32;

/**
 * Decodes a token's fields without checking its signature. Use it to route a
 * token to its node; never to trust one.
 *
 * @param token - the encoded token.
 * @returns the fields, or `undefined` if `token` is not a well-formed token.
 */
export function decodeToken(token: unknown): CallbackTokenFields | undefined {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH)
    return undefined;
  if (!BASE64URL_RE.test(token)) return undefined;
  let parsed: unknown;
  try {
    const bytes = Buffer.from(token, 'base64url');
    // Only the canonical encoding is a token: trailing or padding junk that decodes the same is an alteration.
    if (bytes.toString('base64url') !== token) return undefined;
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const f = parsed as Record<string, unknown>;
  if (
    typeof f.node !== 'string' ||
    typeof f.anchor !== 'string' ||
    typeof f.id !== 'string' ||
    typeof f.sig !== 'string'
  ) {
    return undefined;
  }
  const fields: CallbackTokenFields = { node: f.node, anchor: f.anchor, id: f.id, sig: f.sig };
  if (f.useTransport !== undefined) {
    if (typeof f.useTransport !== 'boolean') return undefined;
    fields.useTransport = f.useTransport;
  }
  if (f.transport !== undefined) {
    if (!Array.isArray(f.transport)) return undefined;
    fields.transport = f.transport;
  }
  return fields;
}

/** Mints and verifies the tokens of one engine node. */
export class TokenCodec {
  /** The node name put in every token. */
  readonly node: string;
  readonly #keys: readonly KeyObject[];

  /**
   * @param node - this engine's node name.
   * @param secrets - HMAC keys; the first signs, all verify. Must be non-empty.
   */
  /** Whether tokens minted by other nodes with the same secrets verify (replicas of a cluster). */
  readonly #anyNode: boolean;

  constructor(
    node: string,
    secrets: readonly (string | Buffer)[],
    options?: { anyNode?: boolean },
  ) {
    this.node = node;
    this.#anyNode = options?.anyNode ?? false;
    this.#keys = secrets.map((s) =>
      createSecretKey(typeof s === 'string' ? Buffer.from(s, 'utf8') : s),
    );
  }

  #sign(key: KeyObject, node: string, anchor: string, id: string): Buffer {
    return createHmac('sha256', key).update(`${node}\n${anchor}\n${id}`).digest();
  }

  /**
   * Mints the token of a callback.
   *
   * @param anchor - the anchor name.
   * @param id - the callbackId.
   * @returns the encoded token.
   */
  mint(anchor: string, id: string): string {
    const sig = this.#sign(this.#keys[0]!, this.node, anchor, id).toString('base64url');
    return Buffer.from(JSON.stringify({ node: this.node, anchor, id, sig }), 'utf8').toString(
      'base64url',
    );
  }

  /**
   * Checks a decoded token's signature against every secret, in constant time.
   *
   * @returns `true` if it was signed by this node with one of its secrets.
   */
  verify(fields: CallbackTokenFields): boolean {
    if ((!this.#anyNode && fields.node !== this.node) || !BASE64URL_RE.test(fields.sig))
      return false;
    const given = Buffer.from(fields.sig, 'base64url');
    if (given.length !== SIG_BYTES) return false;
    let ok = false;
    // Check every key (no early exit) so timing does not reveal which key matched.
    for (const key of this.#keys) {
      if (timingSafeEqual(given, this.#sign(key, fields.node, fields.anchor, fields.id))) ok = true;
    }
    return ok;
  }
}

/**
 * Constant-time string equality, for comparing a presented token with the one
 * the engine minted.
 */
export function safeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1'));
}

const ID_BYTES = 16;
const POOL_IDS = 256;
let idPool = Buffer.alloc(0);
let idOffset = 0;

/**
 * A new callbackId: 128 random bits as 22 base64url characters. Draws from a
 * pooled `randomBytes` buffer so creating many callbacks stays cheap.
 */
export function newCallbackId(): string {
  if (idOffset + ID_BYTES > idPool.length) {
    idPool = randomBytes(ID_BYTES * POOL_IDS);
    idOffset = 0;
  }
  const id = idPool.toString('base64url', idOffset, idOffset + ID_BYTES);
  idOffset += ID_BYTES;
  return id;
}
