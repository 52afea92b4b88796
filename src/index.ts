/**
 * callback-engine: route outside parties' callback reports back to the code
 * that waits for them. Start with {@link createCallbackEngine}.
 *
 * @packageDocumentation
 */

export { createSimulatedClock, systemClock } from './clock.js';
export type { Clock, SimulatedClock, TimerHandle } from './clock.js';
export type { CallbackData, JsonValue } from './data.js';
export { parseDuration } from './duration.js';
export type { Duration } from './duration.js';
export type { HistoryEntry, HistoryKind, HistoryOptions, HistoryPage } from './history.js';
export { createCallbackEngine } from './engine.js';
export type {
  CallbackEngine,
  ListOptions,
  RelayTokenOptions,
  WaitOptions,
  XStateInspector,
} from './engine.js';
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
  OriginRefusedError,
  OriginUnavailableError,
  NothingToRetryError,
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
  toError,
} from './errors.js';
export type { CallbackEngineErrorCode, CallbackEngineErrorOptions, DataIssue } from './errors.js';
export { anchorDiagram, anchorPlan } from './diagrams/anchor-diagram.js';
export type {
  AnchorPlan,
  DiagramFormat,
  DiagramOptions,
  StatusPlan,
  StepDescription,
} from './diagrams/anchor-diagram.js';
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
export { lifecycleMachine } from './lifecycle/machine.js';
export type { LifecycleContext, LifecycleEvent, LifecycleMachine } from './lifecycle/machine.js';
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
export type {
  AnchorOptions,
  AttributeOptions,
  CallbackEngineOptions,
  CreateOptions,
  EarlyEventsOptions,
} from './options.js';
export type { RetryMap, RetryOption, RetryPolicy, WorkerStepOptions } from './retry.js';
export { workerStep } from './pool/worker-step.js';
export type { PoolOptions, WorkerStep, WorkerStepInput } from './pool/worker-step.js';
export type { RelayOptions } from './relay/options.js';
export { decodeToken, MAX_TOKEN_LENGTH } from './token.js';
export type { CallbackTokenFields, TransportHop } from './token.js';
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
  EarlyEventInput,
  EarlyEventStats,
  EarlyHoldResult,
  EngineEvent,
  EngineEventType,
  EngineStats,
  ListedCallback,
  ListPage,
  StepEntry,
  StepFunction,
  StepInput,
  StepError,
  StepMap,
  StepOutput,
} from './types.js';
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
export type {
  AnchorHandle,
  AnchorTypes,
  DataInput,
  DataView,
  ReportInput,
  ReportTypes,
  ReportView,
  SchemaTypes,
  TypedAnchorOptions,
  TypedCallback,
  TypedCreateOptions,
  TypedStepFunction,
  TypedStepMap,
} from './typed-anchor.js';
export { memoryStore } from './store/store.js';
export type {
  CallbackRowWrite,
  CallbackStore,
  DedupKeyWrite,
  DurableStore,
  JournalAppend,
  MemoryStore,
  SnapshotWrite,
  CommitResult,
  EarlyEventRow,
  InboxEntry,
  Prefetch,
  StoreBatch,
  StoredCallback,
  StoreListQuery,
  StoreOpenContext,
  StoreRecovery,
} from './store/store.js';
