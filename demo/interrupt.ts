/**
 * Child processes of the demo must not outlive it: a Ctrl-C reaches them with the demo, but a
 * SIGTERM to the demo alone (a timeout, a supervisor) would leave its engine processes running.
 *
 * @module
 */

const SIGNALS = { SIGINT: 2, SIGTERM: 15 } as const;

/**
 * Until the returned function is called, SIGINT or SIGTERM runs `cleanup` (synchronously: send
 * the children their signals) and ends the demo with the usual exit code (128 + the signal).
 *
 * @returns the function that removes the handlers.
 */
export function onInterrupt(cleanup: () => void): () => void {
  const handlers = Object.entries(SIGNALS).map(([signal, n]) => {
    const handler = () => {
      cleanup();
      process.exit(128 + n);
    };
    process.once(signal, handler);
    return () => process.off(signal, handler);
  });
  return () => handlers.forEach((off) => off());
}
