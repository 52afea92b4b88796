import { createActor, createMachine, type AnyStateMachine } from 'xstate';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli.js';
import { DataVersion } from '../src/data.js';
import {
  machineGraph,
  toMachineConfig,
  toMermaid,
  toStatelyJson,
  toSvg,
} from '../src/diagrams/diagram.js';
import { lifecycleMachine, STATUS_EVENT } from '../src/lifecycle/machine.js';
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

  it('the JSON is a machine config: createMachine() builds the same states and transitions', () => {
    // Through text, as a user pastes it: nothing but JSON survives.
    const json = JSON.parse(JSON.stringify(toStatelyJson())) as Parameters<typeof createMachine>[0];
    const copy = createMachine(json);
    expect(machineGraph(copy)).toEqual(machineGraph(lifecycleMachine));
    expect(copy.id).toBe('callback');
    // And it behaves the same: from every state, every event leads to the same state.
    const values = (m: AnyStateMachine) => {
      const seen: string[] = [];
      const events = ['MERGE', ...Object.values(STATUS_EVENT)];
      for (const first of events)
        for (const second of events) {
          const actor = createActor(m, { input: { data: DataVersion.EMPTY } }).start();
          actor.send({ type: first, data: {} });
          // A final state takes no more events (XState would warn about each one).
          if (actor.getSnapshot().status === 'active') actor.send({ type: second, data: {} });
          seen.push(`${first} ${second} ${JSON.stringify(actor.getSnapshot().value)}`);
          actor.stop();
        }
      return seen;
    };
    expect(values(copy)).toEqual(values(lifecycleMachine));
    // The old export (the resolved machine) was refused exactly here.
    const resolved = JSON.parse(JSON.stringify(lifecycleMachine.toJSON())) as typeof json;
    const old = createActor(createMachine(resolved));
    old.subscribe({ error: () => {} });
    old.start();
    expect(old.getSnapshot().status).toBe('error');
    expect(String((old.getSnapshot() as { error?: unknown }).error)).toMatch(/Initial state node/);
  });

  it('the JSON names states, initial and final states, targets and actions the way people write them', () => {
    const json = toStatelyJson();
    expect(json.id).toBe('callback');
    expect(json.initial).toBe('active');
    expect(Object.keys(json.states!)).toEqual(['active', ...TERMINAL_STATUSES]);
    const active = json.states!.active!;
    expect(active.initial).toBe('create');
    expect(Object.keys(active.states!)).toEqual([...ACTIVE_STATUSES]);
    expect(active.on!.COMPLETE).toEqual({ target: 'complete', actions: ['merge'] });
    expect(active.on!.MERGE).toEqual({ actions: ['merge'] });
    expect(active.states!.progress!.on!.PROGRESS).toEqual({ actions: ['merge'] });
    for (const s of TERMINAL_STATUSES) {
      expect(json.states![s]!.type).toBe('final');
      expect(json.states![s]!.description).toMatch(/\w/);
    }
    // Without options: no descriptions, the JSON starting context.
    const bare = toMachineConfig();
    expect(bare.states!.complete).toEqual({ type: 'final' });
    expect(bare.context).toEqual({ data: {} });
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
    expect(JSON.parse(out)).toEqual(toStatelyJson());
    expect(
      machineGraph(createMachine(JSON.parse(out) as Parameters<typeof createMachine>[0])),
    ).toEqual(machineGraph());
    out = '';
    expect(run('diagram', '--format', 'svg')).toBe(0);
    expect(out).toContain('<svg');
    expect(run('diagram', '--format', 'png')).toBe(2);
    expect(err).toMatch(/--format must be mermaid, svg or json \(got "png"\)/);
    expect(run('launch')).toBe(2);
    expect(run('--help')).toBe(0);
  });
});
