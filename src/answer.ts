/**
 * Answers (`{ status, token, data }`) and output attributes (spec 7).
 *
 * @module
 */

import { EMPTY_DATA, type CallbackData } from './data.js';
import type { AnswerStatus } from './lifecycle/statuses.js';
import { DEFAULTS, type ResolvedAttributes } from './options.js';
import type { CallbackAnswer, CallbackAttributes, CreatedCallback } from './types.js';

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
  if (names.attributeReference !== undefined) out[names.attributeReference] = { status, token, data };
  return Object.freeze(out);
}

/**
 * An answer. Serializes (JSON) as exactly `{ status, token, data }`; the
 * renamed output attributes are computed on first access.
 */
export class Answer implements CallbackAnswer {
  readonly status: AnswerStatus;
  readonly token: string;
  readonly data: CallbackData;
  /** @internal */ readonly #names: ResolvedAttributes;
  /** @internal */ readonly #id: string | undefined;
  /** @internal */ readonly #parentToken: string | undefined;

  constructor(
    status: AnswerStatus,
    token: string,
    data: CallbackData,
    names: ResolvedAttributes = DEFAULTS.attributes,
    id?: string,
    parentToken?: string,
  ) {
    this.status = status;
    this.token = token;
    this.data = data;
    this.#names = names;
    this.#id = id;
    this.#parentToken = parentToken;
  }

  /** The output attributes under the anchor's names. */
  get attributes(): CallbackAttributes {
    return buildAttributes(this.#names, this.status, this.token, this.#id, this.data, this.#parentToken);
  }

  /** The JSON form: `{ status, token, data }`. */
  toJSON(): { status: AnswerStatus; token: string; data: CallbackData } {
    return { status: this.status, token: this.token, data: this.data };
  }
}

/** The answer of `create`: an {@link Answer} that also carries the callbackId. */
export class CreatedAnswer extends Answer implements CreatedCallback {
  readonly id: string;
  constructor(answer: Answer, id: string, names: ResolvedAttributes, parentToken: string | undefined) {
    super(answer.status, answer.token, answer.data, names, id, parentToken);
    this.id = id;
  }
}

/** The answer for an unknown, forged or removed token. */
export function notFoundAnswer(token: string): Answer {
  return new Answer('notFound', typeof token === 'string' ? token : '', EMPTY_DATA);
}
