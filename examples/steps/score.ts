import type { WorkerStepInput } from 'callback-engine';

/** A CPU-heavy step: runs on a worker thread with a structured clone of the step input. */
export function score(input: WorkerStepInput): { score: number } {
  const text = typeof input.data.text === 'string' ? input.data.text : '';
  let score = 0;
  for (let i = 0; i < text.length; i++) score = (score * 31 + text.charCodeAt(i)) % 1_000_003;
  return { score }; // merged into the callback's data, like an in-process step's output
}
