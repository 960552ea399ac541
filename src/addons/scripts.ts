/**
 * `-s script.ts` / `-s script.js`: user addons loaded without a build step (TypeScript through
 * tsx), reloaded when the file changes. A script that fails to load is reported with its stack
 * and the previous version (if any) keeps running; one that throws in a hook is reported by the
 * addon manager and the flow goes on.
 */
import { watch, existsSync, type FSWatcher } from "node:fs";
import { resolve, dirname, basename } from "node:path";
import { pathToFileURL } from "node:url";
import { HOOK_NAMES, type Addon, type AddonContext } from "../core/addons.js";

interface LoadedScript {
  path: string;
  addons: Addon[];
  watcher: FSWatcher | null;
  reloadTimer: NodeJS.Timeout | null;
}

export class Scripts implements Addon {
  name = "scripts";
  private ctx!: AddonContext;
  private loaded = new Map<string, LoadedScript>();
  private generation = 0;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    ctx.options.add({ name: "scripts", type: "strings", default: [] as string[], help: "Scripts to load (.ts or .js exporting an addon or a list of addons); repeatable with -s" });
  }

  async configure(updated: Set<string>): Promise<void> {
    if (!updated.has("scripts")) return;
    const wanted = this.ctx.options.get<string[]>("scripts").map((p) => resolve(p));
    for (const path of wanted) {
      if (!existsSync(path)) throw new Error(`script ${path} does not exist`);
    }
    for (const [path, script] of this.loaded) {
      if (!wanted.includes(path)) this.unload(script);
    }
    for (const path of wanted) {
      if (this.loaded.has(path)) continue;
      const script: LoadedScript = { path, addons: [], watcher: null, reloadTimer: null };
      this.loaded.set(path, script);
      const ok = await this.importInto(script);
      if (!ok) throw new Error(`script ${path} failed to load (see the error above)`);
      this.watch(script);
    }
  }

  done(): void {
    for (const script of this.loaded.values()) script.watcher?.close();
  }

  /** Imports the script afresh and swaps its addons in; false when it failed. */
  private async importInto(script: LoadedScript): Promise<boolean> {
    let exported: unknown;
    try {
      exported = await importFresh(script.path, ++this.generation);
    } catch (err) {
      this.ctx.log.error(`script ${script.path} failed to load: ${(err as Error).stack ?? err}`);
      return false;
    }
    const addons = addonsFrom(exported);
    if (addons.length === 0) {
      this.ctx.log.error(`script ${script.path} exports no addon: use \`export default { request(flow) { … } }\` or \`export default [addonA, addonB]\``);
      return false;
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
    for (const addon of addons) {
      addon.name ??= basename(script.path);
      this.ctx.addons.insertBefore("dump", addon);
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

/** Imports `path` bypassing the module cache, so an edited script is really re-read. */
async function importFresh(path: string, generation: number): Promise<unknown> {
  if (/\.(c|m)?tsx?$/.test(path)) {
    const { tsImport } = await import("tsx/esm/api");
    // tsImport loads in its own namespace each time, so imports of the script reload too.
    return tsImport(`${pathToFileURL(path).href}?v=${generation}`, import.meta.url);
  }
  return import(`${pathToFileURL(path).href}?v=${generation}`);
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

function looksLikeAddon(x: unknown): boolean {
  return !!x && typeof x === "object" && HOOK_NAMES.some((h) => typeof (x as Record<string, unknown>)[h] === "function");
}

function instantiate(x: unknown): unknown {
  // A class is instantiated; objects are addons as they are.
  if (typeof x === "function" && /^class\s/.test(Function.prototype.toString.call(x))) return new (x as new () => unknown)();
  return x;
}
