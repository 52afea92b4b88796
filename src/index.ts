/**
 * callback-engine: route outside parties' callback reports back to the code that waits for
 * them. Start with {@link createCallbackEngine}.
 *
 * What this entry holds, in the order a user meets it: the engine and its options; anchors,
 * steps and schemas; the CALLBACK message and answers; statuses and the lifecycle machine;
 * errors; time; diagrams; what support views read. It loads no HTTP, PostgreSQL, cluster or
 * worker-pool code: each subpath (`/http`, `/client`, `/sqlite`, `/postgres`, `/dashboard`,
 * `/metrics`, `/fastify`, `/express`) loads only what it needs. The contract a store implements
 * is in the experimental `callback-engine/store`.
 *
 * @packageDocumentation
 */

// ---- the engine ------------------------------------------------------------------------------
export { createCallbackEngine } from './engine.js';
export type {
  CallbackEngine,
  ListOptions,
  RelayTokenOptions,
  XStateInspector,
} from './callback-engine.js';
export type { WaitOptions } from './types.js';
export type { AnchorOptions, EarlyEventsOptions } from './options/anchor.js';
export type { AttributeOptions } from './answer.js';
export type { CallbackEngineOptions } from './options/engine.js';
export type { CreateOptions } from './options/create.js';
export type { RelayOptions } from './relay/options.js';
export { memoryStore } from './store/store.js';
export type { CallbackStore, MemoryStore } from './store/store.js';

// ---- anchors, steps and schemas --------------------------------------------------------------
export { isStandardSchema } from './schema.js';
export type {
  InferInput,
  InferOutput,
  ReportSchemas,
  StandardSchemaIssue,
  StandardSchemaProps,
  StandardSchemaResult,
  StandardSchemaV1,
} from './schema.js';
export { typedEngine } from './typed-engine.js';
export type { TypedEngine } from './typed-engine.js';
export type {
  AnchorHandle,
  AnchorTypes,
  AnyAnchorHandle,
  DataInput,
  DataView,
  NameOf,
  ReportableOf,
  ReportInput,
  ReportTypes,
  ReportView,
  SchemaTypes,
  Token,
  TypedAnchorOptions,
  TypedAnswer,
  TypedCallback,
  TypedCreateArgs,
  TypedCreateOptions,
  TypedStepFunction,
  TypedStepMap,
  TypesOf,
} from './typed-anchor.js';
export { workerStep } from './pool/worker-step.js';
export type { PoolOptions, WorkerStep, WorkerStepInput } from './pool/worker-step.js';
export type { RetryMap, RetryOption, RetryPolicy, WorkerStepOptions } from './retry.js';

// ---- messages, answers, data and tokens ------------------------------------------------------
export type {
  CallbackActionMessage,
  CallbackAnswer,
  CallbackAttributes,
  CallbackDetails,
  CallbackMessage,
  CallbackReportMessage,
  ClusterStats,
  CreatedCallback,
  DispatchOutcome,
  DispatchResult,
  EarlyEventStats,
  EngineEvent,
  EngineEventType,
  EngineStats,
  ListedCallback,
  ListPage,
  StepEntry,
  StepError,
  StepFunction,
  StepInput,
  StepMap,
  StepOutput,
} from './types.js';
export type { CallbackData, JsonValue } from './data.js';
export { decodeToken, MAX_TOKEN_LENGTH } from './token.js';
export type { CallbackTokenFields, TransportHop } from './token.js';
export type { HistoryEntry, HistoryKind, HistoryOptions, HistoryPage } from './history.js';

// ---- statuses and the lifecycle machine ------------------------------------------------------
export {
  ACTIVE_STATUSES,
  DISPATCH_STATUSES,
  TERMINAL_STATUSES,
  isTerminal,
} from './lifecycle/statuses.js';
export type {
  ActiveStatus,
  AnswerStatus,
  CallbackStatus,
  DispatchStatus,
  StepKey,
  TerminalStatus,
} from './lifecycle/statuses.js';
export { lifecycleMachine } from './lifecycle/machine.js';
export type { LifecycleContext, LifecycleEvent, LifecycleMachine } from './lifecycle/machine.js';

// ---- errors ----------------------------------------------------------------------------------
export {
  AlreadySettledError,
  CallbackEngineError,
  DuplicateKeyError,
  EarlyEventsFullError,
  EngineClosedError,
  InvalidArgumentError,
  InvalidDataError,
  InvalidMessageError,
  LeaseLostError,
  NothingToRetryError,
  OriginRefusedError,
  OriginUnavailableError,
  ParentInactiveError,
  ParentNotFoundError,
  PayloadTooLargeError,
  PoolSaturatedError,
  SecretMismatchError,
  StepTimeoutError,
  StoreIncompatibleError,
  StoreLockedError,
  StoreUnavailableError,
  UnknownAnchorError,
} from './errors.js';
export { toError } from './thrown.js';
export type { CallbackEngineErrorCode, CallbackEngineErrorOptions, DataIssue } from './errors.js';

// ---- time ------------------------------------------------------------------------------------
export { createSimulatedClock, systemClock } from './clock.js';
export type { Clock, SimulatedClock, TimerHandle } from './clock.js';
export { parseDuration } from './duration.js';
export type { Duration } from './duration.js';

// ---- diagrams --------------------------------------------------------------------------------
export type { DiagramFormat, DiagramOptions } from './diagrams/anchor-diagram.js';
export {
  machineGraph,
  toMachineConfig,
  toMermaid,
  toStatelyJson,
  toSvg,
} from './diagrams/diagram.js';
export type {
  DiagramState,
  DiagramTransition,
  MachineConfigJson,
  MachineConfigOptions,
  MachineGraph,
  MermaidOptions,
  StateConfigJson,
  SvgOptions,
  TransitionConfigJson,
} from './diagrams/diagram.js';
