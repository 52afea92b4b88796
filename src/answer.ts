/**
 * Answers (`{ status, token, data }`) and output attributes (spec 7).
 *
 * @module
 */

import { inspect } from 'node:util';
import { DataVersion, type CallbackData } from './data.js';
import type { AnswerStatus } from './lifecycle/statuses.js';
import type { CallbackAnswer, CallbackAttributes, CreatedCallback, StepError } from './types.js';

/** Names of the output attributes (spec 7). */
export interface AttributeOptions {
  /** @default 'callbackToken' */
  tokenAttribute?: string;
  /** @default 'callbackParentToken' */
  parentTokenAttribute?: string;
  /** @default 'callbackData' */
  dataAttribute?: string;
  /** @default 'callbackId' */
  idAttribute?: string;
  /** @default 'callbackStatus' */
  statusAttribute?: string;
  /** When set, the whole `{ status, token, data }` answer also appears under this name. @default off */
  attributeReference?: string;
}

/** Resolved output attribute names. */
export type ResolvedAttributes = Readonly<
  Required<Omit<AttributeOptions, 'attributeReference'>>
> & {
  readonly attributeReference: string | undefined;
};

/** The default output attribute names (spec 7). */
export const DEFAULT_ATTRIBUTES: ResolvedAttributes = Object.freeze({
  tokenAttribute: 'callbackToken',
  parentTokenAttribute: 'callbackParentToken',
  dataAttribute: 'callbackData',
  idAttribute: 'callbackId',
  statusAttribute: 'callbackStatus',
  attributeReference: undefined,
});

/**
 * Builds the output attributes of a callback under an anchor's names.
 *
 * @param names - the anchor's resolved attribute names.
 */
export function buildAttributes(
  names: ResolvedAttributes,
  status: AnswerStatus,
  token: string,
  id: string | undefined,
  data: CallbackData,
  parentToken: string | undefined,
): CallbackAttributes {
  const out: Record<string, unknown> = {
    [names.tokenAttribute]: token,
    [names.dataAttribute]: data,
    [names.statusAttribute]: status,
  };
  if (id !== undefined) out[names.idAttribute] = id;
  if (parentToken !== undefined) out[names.parentTokenAttribute] = parentToken;
  if (names.attributeReference !== undefined)
    out[names.attributeReference] = { status, token, data };
  return Object.freeze(out);
}

/** The JSON form of an answer: `{ status, token, data }`, plus `stepError` when a step failed. */
export interface AnswerJson {
  status: AnswerStatus;
  token: string;
  data: CallbackData;
  stepError?: StepError;
}

/**
 * An answer. Serializes (JSON) as exactly `{ status, token, data }` (plus `stepError` once a
 * step of the callback failed); `data`
 * and the renamed output attributes are built on first access, so answers
 * nobody reads cost no copying.
 */
export class Answer implements CallbackAnswer {
  readonly status: AnswerStatus;
  readonly token: string;
  /** @internal */ readonly #data: DataVersion;
  /** @internal */ readonly #names: ResolvedAttributes;
  /** @internal */ readonly #id: string | undefined;
  /** @internal */ readonly #parentToken: string | undefined;
  /** The callback's latest step failure, if any. */
  readonly stepError: StepError | undefined;

  constructor(
    status: AnswerStatus,
    token: string,
    data: DataVersion,
    names: ResolvedAttributes = DEFAULT_ATTRIBUTES,
    id?: string,
    parentToken?: string,
    stepError?: StepError,
  ) {
    this.stepError = stepError;
    this.status = status;
    this.token = token;
    this.#data = data;
    this.#names = names;
    this.#id = id;
    this.#parentToken = parentToken;
  }

  /** The callback's merged data at the time of this answer (frozen). */
  get data(): CallbackData {
    return this.#data.value;
  }

  /** @internal the data version, to pass on without building it. */
  get dataVersion(): DataVersion {
    return this.#data;
  }

  /** The output attributes under the anchor's names. */
  get attributes(): CallbackAttributes {
    return buildAttributes(
      this.#names,
      this.status,
      this.token,
      this.#id,
      this.data,
      this.#parentToken,
    );
  }

  /** The JSON form: `{ status, token, data }`, plus `stepError` when a step failed. */
  toJSON(): AnswerJson {
    const json: AnswerJson = { status: this.status, token: this.token, data: this.data };
    if (this.stepError !== undefined) json.stepError = this.stepError;
    return json;
  }

  /** Shows `{ status, token, data }` in `console.log` and `util.inspect`. */
  [inspect.custom](depth: number, options: object): string {
    return `${this.constructor.name} ${inspect(this.toJSON(), { ...options, depth })}`;
  }
}

/** The answer of `create`: an {@link Answer} that also carries the callbackId. */
export class CreatedAnswer extends Answer implements CreatedCallback {
  readonly id: string;
  constructor(
    answer: Answer,
    id: string,
    names: ResolvedAttributes,
    parentToken: string | undefined,
  ) {
    super(
      answer.status,
      answer.token,
      answer.dataVersion,
      names,
      id,
      parentToken,
      answer.stepError,
    );
    this.id = id;
  }
}

/** The answer for an unknown, forged or removed token. */
export function notFoundAnswer(token: string): Answer {
  return new Answer('notFound', typeof token === 'string' ? token : '', DataVersion.EMPTY);
}
