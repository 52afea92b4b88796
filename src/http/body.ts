/**
 * Reading request bodies under a byte limit, and parsing them as JSON
 * defensively: the limit is enforced while streaming (nothing unbounded is
 * ever buffered), invalid UTF-8 and excessive nesting are refused before
 * `JSON.parse` sees them.
 *
 * @module
 */

import { isUtf8 } from 'node:buffer';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { InvalidMessageError, PayloadTooLargeError } from '../errors.js';
import { HttpError } from './respond.js';

/** Thrown when the client went away before its body arrived: nothing is answered. */
export class ClientGoneError extends Error {
  constructor() {
    super('the client closed the connection before sending its whole body');
  }
}

/** A body already read (or parsed) by a framework before the handler ran. */
type Preread = { raw: Buffer } | { parsed: unknown };

const EMPTY = Buffer.alloc(0);

function tooLarge(limit: number, what: string): PayloadTooLargeError {
  return new PayloadTooLargeError(`request body ${what} the limit of ${limit} bytes`, limit);
}

/**
 * What a framework left in `req.body`, if it already consumed the stream
 * (Express `raw()`/`text()`/`json()`, Fastify's parsed body).
 */
export function prereadBody(req: IncomingMessage): Preread | undefined {
  if (!req.readableEnded) return undefined;
  const body = (req as IncomingMessage & { body?: unknown }).body;
  if (Buffer.isBuffer(body)) return { raw: body };
  if (typeof body === 'string') return { raw: Buffer.from(body, 'utf8') };
  if (body === undefined) return { raw: EMPTY };
  return { parsed: body };
}

/**
 * Reads a request body, refusing it as soon as it passes `limit` bytes: a
 * declared `Content-Length` over the limit is refused before reading, a
 * chunked body the moment its running count passes the limit. On refusal the
 * stream is paused and left unread.
 *
 * @returns the body; an empty buffer for a request without one.
 * @throws {@link PayloadTooLargeError} over the limit; {@link ClientGoneError} if the client left.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined) {
    const n = Number(declared);
    if (n > limit) return Promise.reject(tooLarge(limit, `declares ${declared} bytes, over`));
    if (n === 0) return Promise.resolve(EMPTY);
  } else if (req.headers['transfer-encoding'] === undefined) {
    // HTTP/1.1 without either header has no body.
    return Promise.resolve(EMPTY);
  }
  return new Promise<Buffer>((resolve, reject) => {
    (req as Reading)[READING] = { chunks: [], size: 0, limit, resolve, reject };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('close', onClose);
  });
}

/** Per-request read state, kept on the request so the listeners below are shared, not per-request closures. */
interface ReadState {
  readonly chunks: Buffer[];
  size: number;
  readonly limit: number;
  readonly resolve: (body: Buffer) => void;
  readonly reject: (err: Error) => void;
}

const READING = Symbol('callback-engine.reading');
type Reading = IncomingMessage & { [READING]?: ReadState | undefined };

/** Detaches the listeners and returns the state, or `undefined` if the read already settled. */
function finish(req: Reading): ReadState | undefined {
  const state = req[READING];
  if (state === undefined) return undefined;
  req[READING] = undefined;
  req.off('data', onData);
  req.off('end', onEnd);
  req.off('error', onGone);
  req.off('close', onClose);
  return state;
}

function onData(this: Reading, chunk: Buffer): void {
  const state = this[READING];
  if (state === undefined) return;
  state.size += chunk.length;
  if (state.size > state.limit) {
    finish(this);
    // Stop reading: the rest of the body stays unread and the connection is closed after the 413.
    this.pause();
    state.reject(tooLarge(state.limit, 'is over'));
    return;
  }
  state.chunks.push(chunk);
}

function onEnd(this: Reading): void {
  const state = finish(this);
  if (state === undefined) return;
  const { chunks, size } = state;
  state.resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
}

function onGone(this: Reading): void {
  finish(this)?.reject(new ClientGoneError());
}

function onClose(this: Reading): void {
  if (!this.complete) onGone.call(this);
}

/** The lower-cased media type of a `Content-Type` header, without parameters, or `''`. */
export function mediaType(headers: IncomingHttpHeaders): string {
  const ct = headers['content-type'];
  if (ct === undefined) return '';
  const semi = ct.indexOf(';');
  return (semi === -1 ? ct : ct.slice(0, semi)).trim().toLowerCase();
}

/** Whether a media type is JSON: `application/json` or any `+json` suffix type. */
export function isJsonType(type: string): boolean {
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
}

/**
 * Checks that a request carries JSON (`application/json` or `+json`, UTF-8).
 *
 * @param accept - further accepted media types (exact).
 * @throws {@link HttpError} 415 otherwise.
 */
export function requireJson(headers: IncomingHttpHeaders, accept: readonly string[] = []): string {
  // The common case, without parsing parameters.
  if (headers['content-type'] === 'application/json') return 'application/json';
  const type = mediaType(headers);
  if (!(type === 'application/json' || accept.includes(type))) {
    throw unsupported(
      `content-type must be application/json (got ${type === '' ? 'none' : JSON.stringify(type)})`,
    );
  }
  checkCharset(headers);
  return type;
}

/** Refuses a `charset` parameter other than UTF-8. @throws {@link HttpError} 415. */
export function checkCharset(headers: IncomingHttpHeaders): void {
  const ct = headers['content-type'];
  const m = ct === undefined ? null : /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(ct);
  if (m && !/^utf-?8$/i.test(m[1] ?? '')) {
    throw unsupported(`JSON bodies must be UTF-8 (got charset ${JSON.stringify(m[1])})`);
  }
}

/** A 415 error. */
export function unsupported(message: string): HttpError {
  return new HttpError('CBE_ERR_UNSUPPORTED_MEDIA_TYPE', 415, message);
}

/**
 * Whether JSON text nests arrays/objects deeper than `max`, scanning bytes
 * (strings skipped), so deep input is refused before anything recursive runs.
 */
export function nestsDeeperThan(bytes: Uint8Array, max: number): boolean {
  // Fewer bytes than the limit cannot hold more opening brackets than it.
  if (bytes.length <= max) return false;
  // Nor can fewer opening brackets than the limit: counted with native indexOf (most bodies have
  // a handful), the byte loop below runs only for bodies that might be deep.
  const buf = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  let opening = 0;
  for (let at = buf.indexOf(0x7b); at >= 0 && opening <= max; at = buf.indexOf(0x7b, at + 1))
    opening++;
  for (let at = buf.indexOf(0x5b); at >= 0 && opening <= max; at = buf.indexOf(0x5b, at + 1))
    opening++;
  if (opening <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * Parses a JSON body: valid UTF-8 (a leading BOM is allowed), nesting at most
 * `maxDepth`, then `JSON.parse`.
 *
 * @returns the value, or `undefined` for an empty body.
 * @throws {@link InvalidMessageError} naming what is wrong.
 */
export function parseJson(bytes: Buffer, maxDepth: number, what = 'request body'): unknown {
  if (bytes.length === 0) return undefined;
  if (!isUtf8(bytes)) throw new InvalidMessageError(`${what} is not valid UTF-8`);
  if (nestsDeeperThan(bytes, maxDepth)) {
    throw new InvalidMessageError(`${what} nests arrays or objects deeper than ${maxDepth} levels`);
  }
  let text = bytes.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const detail = (err as Error).message;
    throw new InvalidMessageError(
      `${what} is not valid JSON: ${detail.length > 200 ? `${detail.slice(0, 200)}...` : detail}`,
    );
  }
}
