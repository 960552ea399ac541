/** One shaping rule with each key's rate and queue, as the web UI's Shaping page shows it: plain data (web/ imports it too). */
export interface ShapingRuleStatus {
  id: string;
  text: string;
  explain: string;
  adaptive: boolean;
  keys: { key: string; rate: number; queued: number; longestWaitMs: number; released: number; rejected: number; cuts: number | null; throttles: number | null }[];
}
