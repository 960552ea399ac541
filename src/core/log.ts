/** A leveled logger writing lines to a sink (stderr by default); addons log through it. */
import type { Logger } from "./addons.js";
import type { LogEntry, LogLevel } from "./log-entry.js";
export type { LogEntry, LogLevel } from "./log-entry.js";

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };

export class LineLogger implements Logger {
  /** The latest entries, for the console's event log. */
  readonly recent: LogEntry[] = [];
  /** Entries ever logged (the recent window keeps only the last 1,000): lets a viewer tell what it has not seen. */
  count = 0;
  private entryListeners: ((entry: LogEntry) => void)[] = [];
  constructor(
    public level: LogLevel = "info",
    private readonly sink: (line: string) => void = (line) => process.stderr.write(line + "\n"),
  ) {}

  private write(level: Exclude<LogLevel, "silent">, message: string): void {
    const entry: LogEntry = { level, message, timestamp: Date.now() };
    this.recent.push(entry);
    this.count++;
    for (const l of this.entryListeners) l(entry);
    if (this.recent.length > 1000) this.recent.splice(0, this.recent.length - 1000);
    if (RANK[level] < RANK[this.level]) return;
    const t = new Date().toISOString().slice(11, 23);
    const tag = level === "info" ? "" : `${level}: `;
    this.sink(`[${t}] ${tag}${message}`);
  }
  /** Calls `listener` with every entry from now on (the web UI's event log); returns an unsubscribe. */
  onEntry(listener: (entry: LogEntry) => void): () => void {
    this.entryListeners.push(listener);
    return () => {
      this.entryListeners = this.entryListeners.filter((l) => l !== listener);
    };
  }
  debug(m: string) { this.write("debug", m); }
  info(m: string) { this.write("info", m); }
  warn(m: string) { this.write("warn", m); }
  error(m: string) { this.write("error", m); }
}
