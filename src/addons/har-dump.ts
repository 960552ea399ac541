/**
 * `--set hardump=FILE` (mitmproxy's savehar): write every flow seen — live or loaded with `-r` —
 * to a HAR file when sluice exits (`-` prints it). `save_stream_filter` selects the flows, as in
 * mitmproxy. Flows are kept in memory until then, as mitmproxy does: use `-w FILE.har` to stream
 * a HAR file instead.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import { flowsToHar, HarWriter } from "../store/har.js";
import { SAVE_OPTIONS } from "./save.js";
import { declareOptions, type TypedOptions } from "../core/options.js";
import { expandHome } from "../core/spec.js";

/** The options this addon owns, declared once (names, types, defaults, help). */
export const HAR_DUMP_OPTIONS = declareOptions({
  hardump: { type: "optional-string", default: null, help: "Write all flows to this HAR file on exit (- prints it); save_stream_filter selects them" },
});
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";

export class HarDump implements Addon {
  name = "hardump";
  private flows: HTTPFlow[] = [];
  private seen = new WeakSet<HTTPFlow>();
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof HAR_DUMP_OPTIONS>;
  private path: string | null = null;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(HAR_DUMP_OPTIONS);
    ctx.view.onChange((event, flow) => {
      if (this.path && event === "add" && flow) this.keep(flow);
    });
  }

  configure(updated: Set<string>): void {
    if (!updated.has("hardump")) return;
    const path = this.opts.hardump;
    // The file is written at exit: a path that cannot be written is refused now, not after the session.
    // `~/x.har` from config.yaml or a quoted argument means the home folder, as -w's path does.
    const expanded = path && path !== "-" ? expandHome(path) : path;
    if (expanded && expanded !== "-") refuseUnwritable(expanded);
    this.path = expanded;
  }

  private keep(flow: HTTPFlow): void {
    if (this.seen.has(flow)) return;
    this.seen.add(flow);
    this.flows.push(flow);
  }

  async done(): Promise<void> {
    if (!this.path) return;
    // mitmproxy's hardump honours save_stream_filter; without the save addon there is none.
    const filterText = this.ctx.options.lookup(SAVE_OPTIONS)?.save_stream_filter ?? null;
    const filter = filterText ? this.ctx.filter(filterText) : null;
    const flows = this.flows.filter((f) => (!filter || filter(f)) && !f.live);
    if (this.path === "-") {
      process.stdout.write(JSON.stringify(flowsToHar(flows), null, 2) + "\n");
      return;
    }
    const writer = await HarWriter.open(this.path);
    for (const flow of flows) writer.write(flow);
    await writer.close();
    this.ctx.log.info(`hardump: wrote ${flows.length} flow${flows.length === 1 ? "" : "s"} to ${this.path}`);
  }
}

function refuseUnwritable(path: string): void {
  const dir = dirname(resolve(path));
  let why: string | null = null;
  if (existsSync(path) && statSync(path).isDirectory()) why = `${path} is a directory`;
  else {
    try {
      accessSync(dir, constants.W_OK);
      if (!statSync(dir).isDirectory()) why = `${dir} is not a directory`;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      why = code === "ENOENT" ? `the directory ${dir} does not exist` : code === "EACCES" ? `no permission to write in ${dir}` : (err as Error).message;
    }
  }
  if (why) throw new Error(`hardump: cannot write ${path}: ${why}; give a HAR file path in a folder you can write (or - to print it)`);
}
