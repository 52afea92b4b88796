import { describe, expect, it } from 'vitest';
import { main } from '../src/cli.js';
import { machineGraph, toMermaid, toStatelyJson, toSvg } from '../src/lifecycle/diagram.js';
import { ACTIVE_STATUSES, TERMINAL_STATUSES } from '../src/lifecycle/statuses.js';

// What spec 3 says the lifecycle is, written out independently of the machine.
const FORWARD: [string, string, string][] = [
  ['create', 'ACCEPT', 'accept'],
  ['create', 'START', 'start'],
  ['create', 'PROGRESS', 'progress'],
  ['accept', 'START', 'start'],
  ['accept', 'PROGRESS', 'progress'],
  ['start', 'PROGRESS', 'progress'],
  ['progress', 'PROGRESS', 'progress'],
];
const TERMINAL_EVENTS = TERMINAL_STATUSES.map((s) => [s.toUpperCase(), s] as const);

describe('lifecycle diagrams (from the real machine)', () => {
  it('the graph holds exactly the spec statuses and transitions', () => {
    const g = machineGraph();
    const keys = g.states.map((s) => s.key).sort();
    expect(keys).toEqual(['active', ...ACTIVE_STATUSES, ...TERMINAL_STATUSES].sort());
    const edges = g.transitions
      .map((t) => `${t.source.split('.').at(-1)} ${t.event} ${t.target.split('.').at(-1)}`)
      .sort();
    const expected = [
      ...FORWARD.map(([a, e, b]) => `${a} ${e} ${b}`),
      ...TERMINAL_EVENTS.map(([e, s]) => `active ${e} ${s}`),
      'active MERGE active',
    ].sort();
    expect(edges).toEqual(expected);
    expect(
      g.states
        .filter((s) => s.type === 'final')
        .map((s) => s.key)
        .sort(),
    ).toEqual([...TERMINAL_STATUSES].sort());
  });

  it('Mermaid lists every state and every transition, with initial and final markers', () => {
    const m = toMermaid();
    expect(m.startsWith('stateDiagram-v2\n')).toBe(true);
    expect(m).toContain('[*] --> active');
    expect(m).toContain('[*] --> create');
    for (const [a, e, b] of FORWARD) expect(m).toContain(`${a} --> ${b}: ${e}`);
    for (const [e, s] of TERMINAL_EVENTS) {
      expect(m).toContain(`active --> ${s}: ${e}`);
      expect(m).toContain(`${s} --> [*]`);
    }
  });

  it('SVG has a box per state with a live count slot, and shows given counts', () => {
    const svg = toSvg(undefined, { counts: { progress: 42, complete: 7 }, title: 'x < y' });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    for (const s of [...ACTIVE_STATUSES, ...TERMINAL_STATUSES]) {
      expect(svg).toContain(`data-state="${s}"`);
      expect(svg).toContain(`data-count-for="${s}"`);
    }
    expect(svg).toContain('data-count-for="progress">42<');
    expect(svg).toContain('data-count-for="complete">7<');
    expect(svg).toContain('x &lt; y');
    expect(svg).not.toMatch(/<script|href=/);
    // Every opened group is closed.
    expect(svg.match(/<g /g)?.length).toBe(svg.match(/<\/g>/g)?.length);
  });

  it('exports the machine JSON for Stately tools', () => {
    const json = toStatelyJson() as {
      id: string;
      states: Record<string, { states?: Record<string, unknown> }>;
    };
    expect(json.id).toBe('callback');
    expect(Object.keys(json.states)).toEqual(['active', ...TERMINAL_STATUSES]);
    expect(Object.keys(json.states.active!.states!)).toEqual([...ACTIVE_STATUSES]);
  });

  it('the CLI prints each format and refuses unknown ones', () => {
    let out = '';
    let err = '';
    const run = (...args: string[]) =>
      main(
        args,
        (t) => (out += t),
        (t) => (err += t),
      );
    expect(run('diagram')).toBe(0);
    expect(out).toBe(toMermaid());
    out = '';
    expect(run('diagram', '--format', 'json')).toBe(0);
    expect(JSON.parse(out)).toEqual(JSON.parse(JSON.stringify(toStatelyJson())));
    out = '';
    expect(run('diagram', '--format', 'svg')).toBe(0);
    expect(out).toContain('<svg');
    expect(run('diagram', '--format', 'png')).toBe(2);
    expect(err).toMatch(/--format must be mermaid, svg or json \(got "png"\)/);
    expect(run('launch')).toBe(2);
    expect(run('--help')).toBe(0);
  });
});
