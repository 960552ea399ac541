// The shapes the server sends: one definition for both sides, in src/ui/web/protocol.ts (plain
// data, so this browser build can import it; the imports are types only and vanish in the bundle).
export type {
  CallAttempt,
  ConnectionDetail,
  FaultRuleInfo,
  FilterProblem,
  FlowDetail,
  FlowKind,
  FlowMarks,
  FlowSummary,
  LogEntry,
  MessageDetail,
  OperationStats,
  OptionRow,
  RetriesPage,
  RowsMessage,
  SdkCall,
  SeriesBucket,
  ShapingRuleStatus,
  StateMessage,
} from "../../src/ui/web/protocol";
