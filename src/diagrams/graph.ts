/**
 * A state machine read as a graph: its states and transitions in definition order, the input of
 * every diagram (Mermaid, SVG, machine config).
 *
 * @module
 */

import type { AnyStateMachine } from 'xstate';
import { lifecycleMachine } from '../lifecycle/machine.js';

/** A state of the machine. */
export interface DiagramState {
  /** Full id, e.g. `callback.active.progress`. */
  readonly id: string;
  /** Key within its parent, e.g. `progress`. */
  readonly key: string;
  /** Parent id; `undefined` for top-level states. */
  readonly parent: string | undefined;
  readonly type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** For compound states: the key of the initial child. */
  readonly initial: string | undefined;
}

/** A transition of the machine. */
export interface DiagramTransition {
  readonly source: string;
  readonly event: string;
  /** Target state id; equals `source` for a targetless (internal) transition. */
  readonly target: string;
  /** Targetless: actions run, the state is not left. */
  readonly internal: boolean;
}

/** States and transitions of a machine, in definition order. */
export interface MachineGraph {
  readonly id: string;
  readonly states: readonly DiagramState[];
  readonly transitions: readonly DiagramTransition[];
}

/** What the diagrams read of an XState state node. */
export interface StateNodeLike {
  id: string;
  key: string;
  type: DiagramState['type'];
  states: Record<string, StateNodeLike>;
  parent?: StateNodeLike | undefined;
  initial?: { target?: readonly { key: string }[] } | undefined;
  transitions: Map<string, readonly { target?: readonly { id: string }[] | undefined }[]>;
}

/**
 * Reads every state and transition of a machine.
 *
 * @param machine - an XState v5 machine; defaults to the callback lifecycle.
 */
export function machineGraph(machine: AnyStateMachine = lifecycleMachine): MachineGraph {
  const states: DiagramState[] = [];
  const transitions: DiagramTransition[] = [];
  const root = machine.root as unknown as StateNodeLike;
  const walk = (node: StateNodeLike, parent: string | undefined) => {
    for (const child of Object.values(node.states)) {
      states.push({
        id: child.id,
        key: child.key,
        parent,
        type: child.type,
        initial: child.type === 'compound' ? child.initial?.target?.[0]?.key : undefined,
      });
      for (const [event, defs] of child.transitions) {
        for (const def of defs) {
          const targets = def.target ?? [];
          if (targets.length === 0)
            transitions.push({ source: child.id, event, target: child.id, internal: true });
          for (const t of targets)
            transitions.push({ source: child.id, event, target: t.id, internal: false });
        }
      }
      walk(child, child.id);
    }
  };
  walk(root, undefined);
  return { id: root.id, states, transitions };
}
