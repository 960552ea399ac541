/** `sluice fleet status --set shared_state=redis://… [--set fleet=NAME] [--json]`: the live processes of a fleet. */
import { parseArgs } from "node:util";
import { UsageError } from "./args.js";
import { fleetStatusText, readFleetStatus } from "../fleet/status.js";

export const FLEET_HELP = `Usage: sluice fleet status --set shared_state=redis://HOST:PORT[/DB] [--set fleet=NAME] [--json]

Lists the live sluice processes of a fleet (README "Running a fleet"): every process started with
the same shared_state and fleet writes a heartbeat every 1.5 s that lives 5 s, so a stopped or
dead process drops out within seconds. For each: its instance label, the address it listens on,
its mode, requests per second, requests waiting in shaping queues, its fault rules and shaping
rules, and when it was last heard from.

Options:
      --set NAME=VALUE   shared_state (required) and fleet (default "default"), as given to the processes
      --json             print {url, fleet, instances: [...]} as JSON (the heartbeat records as written)
  -h, --help             this help
`;

export async function runFleet(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { set: { type: "string", multiple: true }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
  } catch (err) {
    const m = /Unknown option '([^']+)'/.exec((err as Error).message);
    const missing = /Option '([^']+)' argument missing/.exec((err as Error).message);
    if (missing) throw new UsageError(`option ${missing[1]} needs a value: see \`sluice fleet --help\``);
    throw new UsageError(m ? `unknown option ${m[1]} for \`sluice fleet\`: see \`sluice fleet --help\`` : (err as Error).message.replace(/\. To specify a positional argument.*$/s, ""));
  }
  if (parsed.values.help) return void process.stdout.write(FLEET_HELP);
  const [sub, ...extra] = parsed.positionals;
  if (sub !== "status") throw new UsageError(sub === undefined ? "sluice fleet needs a subcommand: sluice fleet status --set shared_state=redis://HOST:PORT" : `unknown fleet subcommand ${JSON.stringify(sub)}; the one there is: sluice fleet status`);
  if (extra.length) throw new UsageError(`unexpected ${JSON.stringify(extra[0])}: sluice fleet status takes only --set and --json`);
  const set: Record<string, string> = { fleet: "default" };
  for (const item of parsed.values.set ?? []) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new UsageError(`--set expects name=value, got ${JSON.stringify(item)}`);
    const name = item.slice(0, eq);
    if (name !== "shared_state" && name !== "fleet") throw new UsageError(`sluice fleet status takes --set shared_state=… and --set fleet=…, not ${name}`);
    set[name] = item.slice(eq + 1);
  }
  if (!set.shared_state) throw new UsageError("sluice fleet status needs the fleet's Redis: --set shared_state=redis://HOST:PORT[/DB]");
  const status = await readFleetStatus(set.shared_state, set.fleet!);
  process.stdout.write(parsed.values.json ? JSON.stringify(status, null, 2) + "\n" : fleetStatusText(status));
}
