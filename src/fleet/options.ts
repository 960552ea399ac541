/**
 * The options that make a sluice part of a fleet (README "Running a fleet"): where the shared
 * state lives, the fleet's name, what to do while it is unreachable, and this process's label.
 */
import { hostname } from "node:os";
import { declareOptions, type TypedOptions } from "../core/options.js";

export const FLEET_OPTIONS = declareOptions({
  shared_state: { type: "string", default: "", help: "Where rate budgets, adaptive rates and fleet rules are shared: redis://[:PASSWORD@]HOST:PORT[/DB] or rediss://… (empty: this process only)" },
  fleet: { type: "string", default: "default", help: "Name of the fleet in the shared state: processes with the same shared_state and fleet share budgets and rules" },
  shared_state_fallback: { type: "string", default: "local", choices: ["local", "closed"], help: "While the shared state is unreachable: local (each process admits its share of each budget: the budget divided by the live processes it last saw) or closed (requests wait for the shared state to come back)" },
  instance: { type: "string", default: "", help: "This process's label in the fleet (metrics' instance label, fleet status); empty: HOSTNAME:PID" },
});

export type FleetOptions = TypedOptions<typeof FLEET_OPTIONS>;

/** The instance label: the option, or HOSTNAME:PID. */
export function instanceLabel(option: string): string {
  return option || `${hostname()}:${process.pid}`;
}

/** A fleet name must be usable inside a Redis key and a metric label. */
export function checkFleetName(name: string): string {
  if (!/^[\w.-]{1,64}$/.test(name)) throw new Error(`fleet=${JSON.stringify(name)}: use 1-64 letters, digits, '-', '_' or '.'`);
  return name;
}
