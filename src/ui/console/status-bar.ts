/**
 * The status bar: where the proxy listens and in which mode, the view filter and intercept
 * filter, how many flows are shown and paused, the fault and shaping rules in force, and how
 * many retries (attempt > 1) were seen.
 */
import type { ConsoleModel } from "./model.js";
import { seg, type Line } from "./lines.js";
import { INTERCEPT_OPTIONS } from "../../addons/intercept.js";

export interface StatusInfo {
  listen: string;
  /** Retries are counted over every flow: done at most once a second, not per frame. */
  retries: number;
}

export function statusLine(model: ConsoleModel, info: StatusInfo, width: number): Line {
  const view = model.master.view.options;
  const intercepting = model.master.options.lookup(INTERCEPT_OPTIONS);
  const shown = model.shown.length;
  const total = model.master.view.all.length;
  const filter = view.view_filter;
  const intercept = intercepting?.intercept;
  const paused = model.interceptedCount;
  const faults = model.faultRuleCount();
  const shapingOptions = model.shapingOptions();
  const shaping = shapingOptions?.rules;
  const shapeFile = shapingOptions?.file;
  const parts: Line = [seg(` ${info.listen} ${model.master.core.mode.join(", ")} `, { bold: true })];
  const add = (text: string, colour?: "yellow" | "magenta" | "cyan" | "red") => parts.push(seg("│ ", { dim: true }), seg(text + " ", { colour, bold: !!colour }));
  add(shown === total ? `${total} flow${total === 1 ? "" : "s"}` : `${shown}/${total} flows`);
  if (filter) add(`filter: ${filter}`, "cyan");
  if (intercept) add(`intercept: ${intercept}${intercepting?.intercept_active ? "" : " (off)"}`, "yellow");
  if (paused) add(`⏸ ${paused} paused`, "yellow");
  if (faults) add(`${faults} fault rule${faults === 1 ? "" : "s"}`, "magenta");
  if (shaping || shapeFile) add(`${shaping ? `${shaping} shaping rule${shaping === 1 ? "" : "s"}` : "shaping"}${shapeFile ? ` + ${shapeFile}` : ""}`, "cyan");
  if (view.view_order !== "time" || view.view_order_reversed) add(`order: ${view.view_order}${view.view_order_reversed ? " reversed" : ""}`, "cyan");
  if (view.console_focus_follow) add("follow", "cyan");
  if (info.retries) add(`${info.retries} retr${info.retries === 1 ? "y" : "ies"}`, "yellow");
  const clock = new Date().toTimeString().slice(0, 8);
  const used = parts.reduce((n, s) => n + s.text.length, 0);
  if (used + clock.length + 1 < width) parts.push(seg(" ".repeat(width - used - clock.length - 1) + clock + " ", { dim: true }));
  for (const s of parts) s.inverse = true;
  return parts;
}
