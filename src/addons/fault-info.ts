/** A fault rule as `fault.list`, the admin API and the web UI's Faults page show it: plain data (web/ imports it too). */
/** A rule as `fault.list` and the admin API show it. */
export interface FaultRuleInfo {
  id: string;
  rule: string;
  filter: string;
  action: string;
  enabled: boolean;
  /** Where it came from: --fault / fault_rules, --faults FILE, added at runtime here, or by another process of the fleet, or a request's x-sluice-fault header (fault_headers). */
  source: "option" | "file" | "runtime" | "fleet" | "header";
  /** Requests that matched the filter while the rule was enabled. */
  matched: number;
  /** Faults this rule injected. */
  injected: number;
  /** What the rule does, in words. */
  explain: string;
}
