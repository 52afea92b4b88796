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
  /** The callbackId (its creation time and 128 random bits, base64url characters). */
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

/**
 * One hop of a wrapped token (spec 4): where the wrapping engine forwards a report, and the
 * token it forwards it with.
 */
export interface TransportHop {
  /** The origin's base URL (its Dispatch Callback Service, without `/callbacks`). */
  readonly url: string;
  /** The token the origin handed out (itself wrapped when the origin is a relay too). */
  readonly token: string;
}

/**
 * The first characters of every wrapped token this library mints: base64url of
 * `{"useTransport":true,` (21 bytes, so 28 characters that do not depend on what follows).
 * The dispatch path tells a wrapped token from a plain one by this prefix, without decoding.
 */
export const WRAPPED_PREFIX = Buffer.from('{"useTransport":true,', 'utf8').toString('base64url');

/** What signing keys of wrapped tokens are derived with: never the plain tokens' keys. */
const WRAPPED_KEY_LABEL = 'callback-engine wrapped token v1';

/** What a key's fingerprint is the HMAC of: a fixed label, so it names the key without revealing it. */
const FINGERPRINT_LABEL = 'callback-engine key fingerprint v1';

const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;
/** Any base64 spelling (either alphabet, optional padding): decoded, but only canonical ones verify. */
const ANY_BASE64_RE = /^[A-Za-z0-9_+/-]+={0,2}$/;
const SIG_BYTES = 32;

/**
 * Decoded fields of tokens that were not in their canonical encoding (the exact bytes
 * {@link TokenCodec.mint} produces: base64url without padding of
 * `{"node","anchor","id","sig"}` as `JSON.stringify` writes it). They decode, so routing by
 * node and anchor still works, but they never verify: one callback has one token, so a map keyed
 * by token cannot be split by alternative spellings of it.
 */
const NON_CANONICAL = new WeakSet<CallbackTokenFields>();

/** The canonical JSON text of a plain token's fields. */
function plainJson(node: string, anchor: string, id: string, sig: string): string {
  return JSON.stringify({ node, anchor, id, sig });
}

/**
 * Decodes a token's fields without checking its signature. Use it to route a
 * token to its node; never to trust one. Another spelling of a token (standard
 * base64 or padding, other JSON key order, whitespace or escapes, extra fields)
 * decodes too, but never verifies: a token is accepted only in the exact
 * encoding the engine minted.
 *
 * @param token - the encoded token.
 * @returns the fields, or `undefined` if `token` is not a well-formed token.
 */
export function decodeToken(token: unknown): CallbackTokenFields | undefined {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH)
    return undefined;
  let canonical = BASE64URL_RE.test(token);
  if (!canonical && !ANY_BASE64_RE.test(token)) return undefined;
  let parsed: unknown;
  let text: string;
  try {
    // The base64 decoder reads both alphabets, with or without padding.
    const bytes = Buffer.from(token, 'base64');
    // Trailing bits or junk that decode the same are an alteration, not the token.
    if (canonical && bytes.toString('base64url') !== token) canonical = false;
    text = bytes.toString('utf8');
    parsed = JSON.parse(text);
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
  // Wrapped tokens are checked whole by verifyWrapped(); as plain tokens they never verify.
  if (!canonical || text !== plainJson(f.node, f.anchor, f.id, f.sig)) NON_CANONICAL.add(fields);
  return fields;
}

/**
 * The fingerprint of a signing key: hex HMAC-SHA256 of a fixed label under the key. Equal keys
 * have equal fingerprints; the key cannot be recovered from it (it is as safe to store as any
 * token, which is an HMAC under the same key too).
 *
 * @param secret - one of the engine's `secrets`.
 * @returns 64 hex characters.
 */
export function keyFingerprint(secret: string | Buffer | KeyObject): string {
  return createHmac('sha256', secret).update(FINGERPRINT_LABEL).digest('hex');
}

/** A replica's keys as fingerprints, in `secrets` order: the first signs, all verify. */
export interface KeyringPeer {
  /** How a message names it, e.g. `replica "orders-a"`. */
  readonly name: string;
  readonly fingerprints: readonly string[];
}

const short = (fp: string | undefined): string => (fp ?? '').slice(0, 8);

/**
 * Whether a replica with keys `mine` may join replicas with keys `peers` (the keys last recorded
 * for their schema, and every live replica's): each side must verify the tokens the other signs,
 * i.e. every signing key is among the other side's keys. Extra verify-only keys on either side do
 * not matter. This makes a rolling rotation safe in three steps, each a restart of every replica:
 * add the new secret after the current one (verify only), then put it first (it signs), then drop
 * the old one; a replica that skips a step while another is still a step behind is refused.
 *
 * @param mine - this replica's fingerprints (the first signs).
 * @param peers - the others.
 * @returns `undefined` when it may join, else why not and what to do, naming keys by the first 8
 *   hex characters of their fingerprints.
 */
export function keyringMismatch(
  mine: readonly string[],
  peers: readonly KeyringPeer[],
): string | undefined {
  const rotate =
    'To rotate secrets, change every replica in three steps, each a restart of every replica: add the new secret after the current one (it only verifies), then put it first (it signs), then drop the old one.';
  const keys = (list: readonly string[]) => list.map(short).join(', ');
  for (const peer of peers) {
    const theirs = peer.fingerprints[0];
    if (theirs !== undefined && !mine.includes(theirs))
      return `the secrets of this replica do not match: ${peer.name} signs tokens with key ${short(theirs)}, which is not among this replica's keys (${keys(mine)}), so its callbacks would be answered notFound here. Give every replica of a schema the same secrets (the same list, in the same order). ${rotate}`;
    if (!peer.fingerprints.includes(mine[0]!))
      return `the secrets of this replica do not match: it would sign tokens with key ${short(mine[0])}, which ${peer.name} cannot verify (its keys: ${keys(peer.fingerprints)}), so its callbacks would be answered notFound there. Give every replica of a schema the same secrets (the same list, in the same order). ${rotate}`;
  }
  return undefined;
}

/** Mints and verifies the tokens of one engine node. */
export class TokenCodec {
  /** The node name put in every token. */
  readonly node: string;
  /** Fingerprints of the secrets (see {@link keyFingerprint}), in order: the first signs. */
  readonly fingerprints: readonly string[];
  readonly #keys: readonly KeyObject[];

  /** Keys of wrapped tokens, derived from the secrets (same order: the first signs). */
  readonly #wrapKeys: readonly KeyObject[];
  /** Whether tokens minted by other nodes with the same secrets verify (replicas of a cluster). */
  readonly #anyNode: boolean;

  /**
   * @param node - this engine's node name.
   * @param secrets - HMAC keys; the first signs, all verify. Must be non-empty.
   */
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
    this.fingerprints = Object.freeze(this.#keys.map(keyFingerprint));
    // A separate key per secret: a wrapped token's signature can never pass as a plain one's.
    this.#wrapKeys = this.#keys.map((key) =>
      createSecretKey(createHmac('sha256', key).update(WRAPPED_KEY_LABEL).digest()),
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
    return Buffer.from(plainJson(this.node, anchor, id, sig), 'utf8').toString('base64url');
  }

  /**
   * Checks a decoded token's signature against every secret, in constant time. Fields decoded
   * from a token that was not in its canonical encoding never verify (see {@link decodeToken}).
   *
   * @returns `true` if it was signed by this node with one of its secrets, and spelled as minted.
   */
  verify(fields: CallbackTokenFields): boolean {
    if (
      NON_CANONICAL.has(fields) ||
      fields.useTransport !== undefined ||
      fields.transport !== undefined ||
      (!this.#anyNode && fields.node !== this.node) ||
      !BASE64URL_RE.test(fields.sig)
    )
      return false;
    const given = Buffer.from(fields.sig, 'base64url');
    // 43 characters carry 258 bits: only the spelling whose 2 spare bits are zero is the signature.
    if (given.length !== SIG_BYTES || given.toString('base64url') !== fields.sig) return false;
    let ok = false;
    // Check every key (no early exit) so timing does not reveal which key matched.
    for (const key of this.#keys) {
      if (timingSafeEqual(given, this.#sign(key, fields.node, fields.anchor, fields.id))) ok = true;
    }
    return ok;
  }

  /**
   * Mints a wrapped token (spec 4): this node's token for a callback owned elsewhere, whose
   * reports are forwarded to `hop`. Deterministic: the same hop always gives the same token.
   *
   * @param anchor - the origin callback's anchor (from its token, as it says).
   * @param id - the origin callback's id (from its token, as it says).
   * @param hop - where to forward, and with which token.
   * @returns the encoded token; it starts with {@link WRAPPED_PREFIX}.
   */
  wrap(anchor: string, id: string, hop: TransportHop): string {
    return encodeWrapped(this.#wrapKeys[0]!, this.node, anchor, id, hop);
  }

  /**
   * Verifies a wrapped token: it must be, byte for byte, the token this node (any node of the
   * cluster, for replicas) would mint for its fields with one of its secrets, so no field (the
   * forwarding URL above all) can be altered. Every key is tried (no early exit), in constant time.
   *
   * @param token - the presented token.
   * @returns its fields and hop, or `undefined` when it is not an authentic wrapped token.
   */
  verifyWrapped(
    token: string,
  ): { readonly fields: CallbackTokenFields; readonly hop: TransportHop } | undefined {
    if (!token.startsWith(WRAPPED_PREFIX)) return undefined;
    const fields = decodeToken(token);
    if (fields?.useTransport !== true || fields.transport?.length !== 1) return undefined;
    if (!this.#anyNode && fields.node !== this.node) return undefined;
    const raw = fields.transport[0] as { url?: unknown; token?: unknown } | null;
    if (typeof raw !== 'object' || raw === null) return undefined;
    if (typeof raw.url !== 'string' || typeof raw.token !== 'string') return undefined;
    const hop: TransportHop = { url: raw.url, token: raw.token };
    let ok = false;
    for (const key of this.#wrapKeys) {
      if (safeEqual(token, encodeWrapped(key, fields.node, fields.anchor, fields.id, hop)))
        ok = true;
    }
    return ok ? { fields, hop } : undefined;
  }
}

/** The wrapped token of these fields, signed with `key`; its JSON starts with `useTransport`. */
function encodeWrapped(
  key: KeyObject,
  node: string,
  anchor: string,
  id: string,
  hop: TransportHop,
): string {
  // A JSON array is an unambiguous encoding of the signed fields (no separator to smuggle).
  const sig = createHmac('sha256', key)
    .update(JSON.stringify([node, anchor, id, hop.url, hop.token]))
    .digest('base64url');
  const json = JSON.stringify({
    useTransport: true,
    node,
    anchor,
    id,
    transport: [{ url: hop.url, token: hop.token }],
    sig,
  });
  return Buffer.from(json, 'utf8').toString('base64url');
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
 * Digits in ASCII order, so that numbers written with them sort as they compare (and an id never
 * starts with `-`, which a command line would take for an option).
 */
const SORTED_DIGITS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** Characters of an id's time prefix: milliseconds since 1970 in base 62, until the year 8888. */
const TIME_CHARS = 8;
let prefixMs = -1;
let prefix = '';

/** `ms` in {@link TIME_CHARS} characters of {@link SORTED_DIGITS}. */
function timePrefix(ms: number): string {
  if (ms !== prefixMs) {
    let out = '';
    let v = Math.max(0, Math.floor(ms));
    for (let i = 0; i < TIME_CHARS; i++) {
      out = SORTED_DIGITS[v % 62]! + out;
      v = Math.floor(v / 62);
    }
    prefixMs = ms;
    prefix = out;
  }
  return prefix;
}

/**
 * A new callbackId, 30 characters: the wall-clock time of its creation in milliseconds (8
 * characters of `0-9A-Za-z`, in base 62) and 128 random bits (22 base64url characters). The
 * random part makes an id unguessable; the time prefix makes newer ids sort after older ones, so
 * a durable store adds a new callback's row and first journal entry at the end of its indexes, a
 * few pages per group commit, rather than on a page of its own each (it doubled SQLite's create
 * rate; PostgreSQL gets the same under a "C" collation, which compares bytes as SQLite does).
 * Draws from a pooled `randomBytes` buffer so creating many callbacks stays cheap.
 */
export function newCallbackId(): string {
  if (idOffset + ID_BYTES > idPool.length) {
    idPool = randomBytes(ID_BYTES * POOL_IDS);
    idOffset = 0;
  }
  const id = idPool.toString('base64url', idOffset, idOffset + ID_BYTES);
  idOffset += ID_BYTES;
  return timePrefix(Date.now()) + id;
}
