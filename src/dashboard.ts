/**
 * callback-engine/dashboard: the live view of an engine (counts per state,
 * throughput, latency, recent transitions, per-callback history), the
 * dashboard page that shows it, and the pictures of one callback's history
 * (its path on the lifecycle, its timeline).
 *
 * @packageDocumentation
 */

export { createDashboard, DASHBOARD_DEFAULTS, withDashboard } from './observe/dashboard.js';
export type { DashboardHandler, DashboardOptions } from './observe/dashboard.js';
export { dashboardPage } from './observe/dashboard-page.js';
export { callbackPath, pathLine, pathMermaid, pathSvg } from './observe/callback-path.js';
export type {
  CallbackPath,
  IgnoredReport,
  PathDetails,
  PathMove,
  PathPictureOptions,
  StepTries,
} from './observe/callback-path.js';
export type { HistoryEntry, HistoryKind, HistoryPage } from './history.js';
export { timelineOf } from './observe/timeline.js';
export { timelineSvg } from './observe/timeline-svg.js';
export { timelineText } from './observe/timeline-text.js';
export type {
  HeartbeatWindow,
  StatusSpan,
  StepTry,
  Timeline,
  TimelineMark,
  TimelineOptions,
} from './observe/timeline.js';
export { createMonitor } from './observe/monitor.js';
export type {
  CallbackHistory,
  HistoryEvent,
  Monitor,
  MonitorOptions,
  MonitorView,
  TransitionRecord,
} from './observe/monitor.js';
