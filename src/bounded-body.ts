/**
 * Reading an answer's body within a byte bound, for the two places the package is an HTTP
 * client: `callback-engine/client` (answers of a callback service) and the relay (answers of an
 * origin service).
 *
 * @module
 */

/** Thrown by {@link readBounded} when a body is over its bound. */
export class BodyTooLarge extends Error {}

/** Reads a response body as UTF-8 text, refusing (and cancelling) one over `max` bytes. */
export async function readBounded(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => {});
    throw new BodyTooLarge();
  }
  if (!res.body) return '';
  const reader = res.body.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      throw new BodyTooLarge();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
