/** URLs of the worker-step fixture modules (test/fixtures/steps), for `workerStep(url, name)`. */
const step = (name: string): URL => new URL(`../fixtures/steps/${name}.ts`, import.meta.url);

export const CPU = step('cpu');
export const FAULTS = step('faults');
export const GATE = step('gate');
export const ORDER = step('order');
export const SCORE = step('score');
