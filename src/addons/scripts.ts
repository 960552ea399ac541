/**
 * `-s script.ts` / `-s script.js`: user addons loaded without a build step (TypeScript through
 * tsx), reloaded when the file changes. A script that fails to load is reported with its stack
 * and the previous version (if any) keeps running; one that throws in a hook is reported by the
 * addon manager and the flow goes on.
 */
import { watch, existsSync, type FSWatcher } from "node:fs";
import { resolve, dirname, basename } from "node:path";
import { pathToFileURL } from "node:url";
import { register } from "node:module";
import { HOOK_NAMES, type Addon, type AddonContext, type HookName } from "../core/addons.js";
import { scriptView } from "./script-view.js";
import { editDistance } from "../core/edit-distance.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

interface LoadedScript {
  path: string;
  addons: Addon[];
  watcher: FSWatcher | null;
  reloadTimer: NodeJS.Timeout | null;
}

/** The options this addon owns, declared once (names, types, defaults, help). */
export const SCRIPTS_OPTIONS = declareOptions({
  scripts: { type: "strings", default: [], help: "Scripts to load (.ts or .js exporting an addon or a list of addons); repeatable with -s" },
});

export class Scripts implements Addon {
  name = "scripts";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof SCRIPTS_OPTIONS>;
  private loaded = new Map<string, LoadedScript>();
  private generation = 0;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(SCRIPTS_OPTIONS);
  }

  async configure(updated: Set<string>): Promise<void> {
    if (!updated.has("scripts")) return;
    const wanted = this.opts.scripts.map((p) => resolve(p));
    for (const path of wanted) {
      if (/\.py$/i.test(path)) throw new Error(`script ${path}: sluice runs JavaScript and TypeScript scripts (.js, .ts), not Python; mitmproxy's names work in them (see "Scripts for mitmproxy users" in the README)`);
      if (!existsSync(path)) throw new Error(`script ${path} does not exist`);
      if (!SCRIPT_EXTENSIONS.test(path)) throw new Error(`script ${path}: sluice loads JavaScript and TypeScript files (.js, .mjs, .ts, .mts); rename it or give the right file`);
    }
    for (const [path, script] of this.loaded) {
      if (!wanted.includes(path)) this.unload(script);
    }
    for (const path of wanted) {
      if (this.loaded.has(path)) continue;
      const script: LoadedScript = { path, addons: [], watcher: null, reloadTimer: null };
      this.loaded.set(path, script);
      const ok = await this.importInto(script, true);
      if (!ok) throw new Error(`script ${path} failed to load: ${this.lastLoadError}`);
      this.watch(script);
    }
  }

  done(): void {
    for (const script of this.loaded.values()) script.watcher?.close();
  }

  /** Why the last import failed, in one line with the script's file:line:col where known. */
  private lastLoadError = "";

  /**
   * Imports the script afresh and swaps its addons in; false when it failed. At start-up (`starting`)
   * the failure is the caller's one-line error; on a reload it is logged and the old version stays.
   */
  private async importInto(script: LoadedScript, starting = false): Promise<boolean> {
    let exported: unknown;
    const failed = (why: string) => {
      this.lastLoadError = why;
      if (!starting) this.ctx.log.error(`script ${script.path} failed to load: ${why}`);
      return false;
    };
    try {
      exported = await importFresh(script.path, ++this.generation);
    } catch (err) {
      return failed(loadErrorLine(err, script.path));
    }
    const addons = addonsFrom(exported).map((a) => this.scriptAddon(script.path, a));
    if (addons.length === 0) {
      const misspelt = misspeltHooks(exported);
      if (misspelt.length) return failed(`it exports no hook sluice calls: ${misspelt.map(([k, h]) => `${k}() is not a hook (did you mean ${h}()?)`).join(", ")}`);
      return failed("it exports no addon: use `export default { request(flow) { … } }` or `export default [addonA, addonB]`");
    }
    for (const old of script.addons) {
      this.ctx.addons.remove(old);
      try {
        await old.done?.();
      } catch (err) {
        this.ctx.log.error(`script ${script.path}: done() failed: ${(err as Error).message}`);
      }
    }
    script.addons = addons;
    this.ctx.addons.insertAfter(this.lastAddonBefore(script), ...addons);
    for (const addon of addons) {
      try {
        await addon.load?.(this.ctx);
        await addon.configure?.(new Set(this.ctx.options.all().map((o) => o.name)));
        await addon.running?.();
      } catch (err) {
        this.ctx.log.error(`script ${script.path} failed to start: ${(err as Error).stack ?? err}`);
      }
    }
    return true;
  }

  /**
   * Scripts stand where the scripts addon stands in the chain (see cli's addon order), each
   * script's addons in the order the scripts were given: after the addons of the scripts before it.
   */
  private lastAddonBefore(script: LoadedScript): Addon {
    let anchor: Addon = this;
    for (const other of this.loaded.values()) {
      if (other === script) break;
      if (other.addons.length) anchor = other.addons[other.addons.length - 1]!;
    }
    return anchor;
  }

  /**
   * The addon as the chain runs it: flow hooks get the script's view of the flow (mitmproxy's
   * names, no silent no-op assignments), mitmproxy's hook names (`requestheaders`, `http_connect`,
   * …) are called as sluice's, and a function that no hook will ever call is reported once.
   */
  private scriptAddon(path: string, addon: Addon): Addon {
    const source = addon as Record<string, unknown>;
    const wrapped: Record<string, unknown> = { name: typeof addon.name === "string" ? addon.name : basename(path) };
    for (const key of allKeys(source)) {
      const fn = source[key];
      if (typeof fn !== "function") continue;
      const hook = (HOOK_NAMES as readonly string[]).includes(key) ? (key as HookName) : MITMPROXY_HOOKS[key];
      if (!hook) {
        const meant = nearHook(key);
        if (meant) this.ctx.log.warn(`script ${path}: ${key}() is not a hook, so sluice never calls it; did you mean ${meant}()?`);
        continue;
      }
      wrapped[hook] = FLOW_HOOKS.has(hook)
        ? (flow: unknown) => (fn as (f: unknown) => unknown).call(addon, scriptView(flow))
        : (...args: unknown[]) => (fn as (...a: unknown[]) => unknown).apply(addon, args);
    }
    return wrapped as Addon;
  }

  private watch(script: LoadedScript): void {
    // Watch the folder: editors often replace the file, which ends a watch on the file itself.
    try {
      script.watcher = watch(dirname(script.path), (_event, file) => {
        if (file && file.toString() !== basename(script.path)) return;
        if (script.reloadTimer) clearTimeout(script.reloadTimer);
        script.reloadTimer = setTimeout(() => {
          if (!existsSync(script.path)) return;
          void this.importInto(script).then((ok) => {
            if (ok) this.ctx.log.info(`reloaded script ${script.path}`);
          });
        }, 100);
      });
      script.watcher.unref();
    } catch (err) {
      this.ctx.log.warn(`cannot watch ${script.path} for changes: ${(err as Error).message}`);
    }
  }

  private unload(script: LoadedScript): void {
    script.watcher?.close();
    for (const a of script.addons) this.ctx.addons.remove(a);
    this.loaded.delete(script.path);
  }
}

let hooksRegistered = false;
/** Once per process, before tsx registers its own hooks (so tsx's run first and hand ours the rest). */
async function registerScriptHooks(): Promise<void> {
  if (hooksRegistered) return;
  hooksRegistered = true;
  const api = (await import("../index.js")) as Record<string, unknown>;
  (globalThis as Record<symbol, unknown>)[Symbol.for("sluice.api")] = api;
  register(new URL("./script-hooks.js", import.meta.url), { data: { sluiceExports: Object.keys(api) } });
}

/** Imports `path` bypassing the module cache, so an edited script is really re-read. */
const SCRIPT_EXTENSIONS = /\.(c|m)?(j|t)sx?$/i;

/**
 * A load error in one line: its message and where in the script it happened (esbuild names
 * FILE:LINE:COL in its message; a thrown error has a stack frame in the script). Node's own
 * SyntaxError for a .js file carries no position, so the line says how to get one.
 */
function loadErrorLine(err: unknown, path: string): string {
  const e = err instanceof Error ? err : new Error(String(err));
  const lines = e.message.split("\n").map((l) => l.trim()).filter(Boolean);
  const located = lines.find((l) => l.startsWith(`${path}:`));
  if (located) return located;
  const url = pathToFileURL(path).href;
  const frame = (e.stack ?? "").split("\n").find((l) => l.includes(url) || l.includes(path));
  const at = frame && /(\d+):(\d+)\)?\s*$/.exec(frame);
  const where = at ? ` (${path}:${at[1]}:${at[2]})` : e.name === "SyntaxError" ? ` (\`node --check ${path}\` shows where)` : "";
  return `${e.name}: ${lines[0] ?? ""}${where}`;
}

async function importFresh(path: string, generation: number): Promise<unknown> {
  await registerScriptHooks();
  if (/\.(c|m)?tsx?$/.test(path)) {
    const { tsImport } = await import("tsx/esm/api");
    // tsImport loads in its own namespace each time, so imports of the script reload too.
    // No tsconfig: the one in the current directory is not the script's, and its `paths` could map
    // "sluice" to a second copy of sluice's sources instead of the running one.
    return tsImport(`${pathToFileURL(path).href}?v=${generation}`, { parentURL: import.meta.url, tsconfig: false });
  }
  return import(`${pathToFileURL(path).href}?v=${generation}`);
}

const FLOW_HOOKS = new Set<HookName>(["requestHeaders", "request", "responseHeaders", "response", "error", "httpConnect", "websocketStart", "websocketMessage", "websocketEnd"]);

/** mitmproxy's event names, as a ported addon spells them, to sluice's. */
const MITMPROXY_HOOKS: Record<string, HookName> = {
  requestheaders: "requestHeaders",
  responseheaders: "responseHeaders",
  http_connect: "httpConnect",
  websocket_start: "websocketStart",
  websocket_message: "websocketMessage",
  websocket_end: "websocketEnd",
  client_connected: "clientConnected",
  client_disconnected: "clientDisconnected",
  server_connect: "serverConnect",
  server_connected: "serverConnected",
  server_disconnected: "serverDisconnected",
  tls_clienthello: "tlsClientHello",
};

/** The hook a misspelt method name was probably meant to be (`responce`, `Request`, `requestHeader`). */
function nearHook(name: string): string | null {
  const lower = name.toLowerCase();
  for (const hook of [...HOOK_NAMES, ...Object.keys(MITMPROXY_HOOKS)]) {
    const h = hook.toLowerCase();
    if (h === lower || (Math.abs(h.length - lower.length) <= 2 && closeEnough(h, lower))) return hook;
  }
  return null;
}

/** At most two edits apart (enough for a typo or a missing plural). */
function closeEnough(a: string, b: string): boolean {
  return editDistance(a, b) <= 2;
}

/** Own and inherited (class method) names, as a script's addon may be an object or a class instance. */
function allKeys(o: object): string[] {
  const keys = new Set<string>();
  for (let p: object | null = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) if (k !== "constructor") keys.add(k);
  }
  return [...keys];
}

function addonsFrom(mod: unknown): Addon[] {
  let m = mod as Record<string, unknown> | null;
  // ESM/CommonJS interop can wrap the default export once or twice more: unwrap to the addon(s).
  for (let i = 0; i < 3 && m && typeof m === "object" && !Array.isArray(m) && !looksLikeAddon(m) && !Array.isArray(m.addons) && "default" in m; i++) {
    m = m.default as Record<string, unknown> | null;
  }
  if (!m) return [];
  const list = Array.isArray(m) ? m : Array.isArray(m.addons) ? (m.addons as unknown[]) : [m];
  return list.map(instantiate).filter(looksLikeAddon) as Addon[];
}

/** Functions of an export that would be hooks but for their spelling: [name, the hook meant]. */
function misspeltHooks(mod: unknown): [string, string][] {
  const found: [string, string][] = [];
  const seen = new Set<unknown>();
  const visit = (x: unknown, depth: number): void => {
    if (!x || typeof x !== "object" || seen.has(x) || depth > 3) return;
    seen.add(x);
    for (const item of Array.isArray(x) ? x : [x]) {
      if (!item || typeof item !== "object") continue;
      for (const key of allKeys(item as object)) {
        const value = (item as Record<string, unknown>)[key];
        if (typeof value === "function") {
          const meant = nearHook(key);
          if (meant && meant !== key) found.push([key, meant]);
        } else if (key === "default" || key === "addons") visit(value, depth + 1);
      }
    }
  };
  visit(mod, 0);
  return found;
}

function looksLikeAddon(x: unknown): boolean {
  return !!x && typeof x === "object" && [...HOOK_NAMES, ...Object.keys(MITMPROXY_HOOKS)].some((h) => typeof (x as Record<string, unknown>)[h] === "function");
}

function instantiate(x: unknown): unknown {
  // A class is instantiated; objects are addons as they are.
  if (typeof x === "function" && /^class\s/.test(Function.prototype.toString.call(x))) return new (x as new () => unknown)();
  return x;
}
