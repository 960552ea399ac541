/** `CONFDIR/config.yaml`: option defaults a user keeps between runs (`name: value` per line). */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { lazyModule } from "./lazy-module.js";

const yaml = lazyModule<typeof import("yaml")>("yaml");

export const CONFIG_FILE = "config.yaml";

/** Option values as strings (lists as JSON), ready for `Options.set`. Throws a readable error. */
export function loadConfigFile(confdir: string): Record<string, string> {
  const path = join(confdir, CONFIG_FILE);
  if (!existsSync(path)) return {};
  let data: unknown;
  try {
    data = yaml().parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`config file ${path} is not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== "object" || Array.isArray(data)) throw new Error(`config file ${path} must be a mapping of option names to values, e.g. "listen_port: 8080"`);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(data as Record<string, unknown>)) {
    out[name] = Array.isArray(value) ? JSON.stringify(value.map(String)) : value === null ? "" : String(value);
  }
  return out;
}
