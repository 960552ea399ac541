/**
 * A version per flow, bumped by the web addon on every hook and edit: a tab resends an open
 * flow's detail, and redraws a list row, only when its flow's version moved.
 */
import type { HTTPFlow } from "../../core/flow.js";

export const flowVersions = new WeakMap<HTTPFlow, number>();

export function bumpVersion(flow: HTTPFlow): void {
  flowVersions.set(flow, (flowVersions.get(flow) ?? 0) + 1);
}
