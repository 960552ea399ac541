/**
 * `--map-local '[|filter]|url-regex|file-or-directory'` (mitmproxy's map_local): answer matching
 * requests from local files instead of the server. A file answers every match; a directory maps
 * the rest of the URL after the match (or the regex's first group) to a file under it, trying
 * `index.html` for directories, never leaving it (`..` is refused). Content-Type comes from the
 * file's extension. When no candidate file exists the answer is 404, and the log says which
 * files were tried.
 */
import { readFileSync, realpathSync, statSync } from "node:fs";
import { join, resolve, sep } from "node:path";
import type { Addon, AddonContext } from "../core/addons.js";
import { Response, type HTTPFlow } from "../core/flow.js";
import type { FlowPredicate } from "../core/filter.js";
import { contentTypeFor } from "../core/mime-types.js";
import { expandHome, parseSpec, pythonRegex } from "../core/spec.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

interface LocalRule {
  filter: FlowPredicate | null;
  pattern: RegExp;
  /** Absolute, symlinks resolved. */
  localPath: string;
}

const VERSION = "sluice 0.1.0";

/** The options this addon owns, declared once (names, types, defaults, help). */
export const MAP_LOCAL_OPTIONS = declareOptions({
  map_local: { type: "strings", default: [], help: "Answer from local files: |filter|url-regex|file-or-directory (repeatable with --map-local)" },
});

export class MapLocal implements Addon {
  name = "map_local";
  private rules: LocalRule[] = [];
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof MAP_LOCAL_OPTIONS>;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(MAP_LOCAL_OPTIONS);
  }

  configure(updated: Set<string>): void {
    if (!updated.has("map_local")) return;
    this.rules = this.opts.map_local.map((spec) => {
      const parsed = parseSpec(spec, "map_local", "|filter|url-regex|file-or-directory");
      const pattern = pythonRegex(parsed.subject, "", "map_local");
      let localPath: string;
      try {
        localPath = realpathSync(resolve(expandHome(parsed.replacement)));
      } catch (err) {
        throw new Error(`map_local: ${JSON.stringify(parsed.replacement)} in ${JSON.stringify(spec)} does not exist (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); name a file or a directory`);
      }
      return { filter: parsed.filter, pattern, localPath };
    });
  }

  request(flow: HTTPFlow): void {
    if (flow.response || flow.error || !flow.live || this.rules.length === 0) return;
    const url = flow.request.prettyUrl;
    const tried: string[] = [];
    for (const rule of this.rules) {
      if (rule.filter && !rule.filter(flow)) continue;
      const m = rule.pattern.exec(url);
      if (!m) continue;
      const candidates = isFile(rule.localPath) ? [rule.localPath] : fileCandidates(url, m, rule.localPath);
      tried.push(...candidates);
      const file = candidates.find(isFile);
      if (!file) continue;
      let body: Buffer;
      try {
        body = readFileSync(file);
      } catch (err) {
        this.ctx.log.warn(`map_local: cannot read ${file}: ${(err as Error).message}`);
        continue;
      }
      const headers: Record<string, string> = { Server: VERSION };
      const type = contentTypeFor(file);
      if (type) headers["Content-Type"] = type;
      flow.response = Response.make(200, body, headers);
      flow.metadata.map_local = file;
      return;
    }
    if (tried.length) {
      flow.response = Response.make(404);
      this.ctx.log.info(`map_local: none of the local file candidates exist: ${tried.join(", ")}`);
    }
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** mitmproxy's file_candidates: the URL's remainder after the match (or group 1) under `root`. */
function fileCandidates(url: string, match: RegExpExecArray, root: string): string[] {
  let suffix: string;
  if (match.length > 1) suffix = match[1] ?? "";
  else {
    suffix = url.slice(match.index + match[0].length);
    suffix = suffix.split("?")[0]!.replace(/^\/+|\/+$/g, "");
  }
  if (!suffix) return [join(root, "index.html")];
  let decoded: string;
  try {
    decoded = decodeURIComponent(suffix);
  } catch {
    decoded = suffix;
  }
  const names = [decoded, `${decoded}/index.html`];
  const escaped = decoded.replace(/[^0-9a-zA-Z\-_.=(),/]/g, "_");
  if (escaped !== decoded) names.push(escaped, `${escaped}/index.html`);
  const out: string[] = [];
  for (const name of names) {
    const joined = safeJoin(root, name);
    if (joined === null) return [];
    out.push(joined);
  }
  return out;
}

/** werkzeug's safe_join: null when `untrusted` would leave `root` (.., absolute paths). */
function safeJoin(root: string, untrusted: string): string | null {
  const parts = untrusted.split("/").filter((p) => p !== "" && p !== ".");
  if (untrusted.startsWith("/") || parts.some((p) => p === ".." || p.includes("\\"))) return null;
  const joined = join(root, ...parts);
  return joined === root || joined.startsWith(root + sep) ? joined : null;
}
