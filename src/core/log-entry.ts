/** One line of the event log: plain data (the web UI's front end imports it too). */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

export interface LogEntry {
  level: Exclude<LogLevel, "silent">;
  message: string;
  timestamp: number;
}
