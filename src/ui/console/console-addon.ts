/**
 * The console's place in the addon chain (where `sluice dump` has its output addon): it tells
 * the console model when flows change, and registers the two commands the console's keys need
 * that the core does not have yet: `replay.client` (key r) and `save.file` (key w), as mitmproxy
 * names them.
 */
import { readFileSync } from "node:fs";
import { ProxyAgent, request as undiciRequest } from "undici";
import type { Addon, AddonContext } from "../../core/addons.js";
import { CommandError } from "../../core/commands.js";
import type { HTTPFlow } from "../../core/flow.js";
import { formatForWriting } from "../../store/index.js";

/** Headers undici frames itself or refuses; the recorded values would be wrong. */
const NOT_SENT = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "proxy-connection", "te", "trailer", "expect", "http2-settings", "host"]);

interface ListeningMaster {
  server: { address(): { address: string; port: number } } | null;
  ca: { files: { certPem: string } } | undefined;
}

export class ConsoleAddon implements Addon {
  name = "console";
  private ctx!: AddonContext;
  private agent: ProxyAgent | null = null;
  /** Called whenever a flow changes in a way the list shows. */
  onChange: () => void = () => {};

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    ctx.commands.add({
      name: "replay.client",
      help: "Re-send the requests of flows through this proxy (they show up as new flows marked ↻)",
      params: [{ name: "flows", type: "flows" }],
      run: (flows: HTTPFlow[]) => {
        for (const f of flows) void this.replay(f);
        return `replaying ${flows.length} flow${flows.length === 1 ? "" : "s"}`;
      },
    });
    ctx.commands.add({
      name: "save.file",
      help: "Save flows to a file: .har for HAR, .sqlite for SQLite, else a mitmproxy flow file",
      params: [{ name: "flows", type: "flows" }, { name: "path", type: "rest" }],
      run: async (flows: HTTPFlow[], path: string) => {
        if (!path.trim()) throw new CommandError("save.file: give a file name, e.g. save.file @shown flows.mitm");
        const target = path.trim().replace(/^~(?=\/)/, process.env.HOME ?? "~");
        let sink;
        try {
          sink = await formatForWriting(target).openWriter(target);
          for (const f of flows) sink.write(f);
          await sink.close();
        } catch (err) {
          throw new CommandError(`save.file: cannot write ${target}: ${(err as Error).message}`);
        }
        return `saved ${flows.length} flow${flows.length === 1 ? "" : "s"} to ${target}`;
      },
    });
  }

  requestHeaders(): void {
    this.onChange();
  }
  request(): void {
    this.onChange();
  }
  responseHeaders(): void {
    this.onChange();
  }
  response(): void {
    this.onChange();
  }
  error(): void {
    this.onChange();
  }
  websocketMessage(): void {
    this.onChange();
  }

  async done(): Promise<void> {
    await this.agent?.close();
    this.agent = null;
  }

  /** Sends the request through our own listener, so it takes the full path (addons, map-remote, faults). */
  private async replay(flow: HTTPFlow): Promise<void> {
    const master = this.ctx.master as ListeningMaster;
    const address = master.server?.address();
    if (!address || !master.ca) return void this.ctx.log.warn("replay: the proxy is not listening");
    if (!this.agent) {
      const host = address.address === "0.0.0.0" || address.address === "::" ? "127.0.0.1" : address.address.includes(":") ? `[${address.address}]` : address.address;
      this.agent = new ProxyAgent({ uri: `http://${host}:${address.port}`, requestTls: { ca: readFileSync(master.ca.files.certPem, "utf8") } });
    }
    const r = flow.request;
    const headers: string[] = [];
    for (const [name, value] of r.headers) if (!NOT_SENT.has(name.toLowerCase()) && !name.startsWith(":")) headers.push(name, value);
    headers.push("x-sluice-client-replay", "1");
    try {
      const res = await undiciRequest(r.url, {
        method: r.method,
        headers,
        body: r.content && r.content.length > 0 ? r.content : undefined,
        dispatcher: this.agent,
      });
      await res.body.dump();
      this.ctx.log.info(`replayed ${r.method} ${r.prettyUrl}: ${res.statusCode}`);
    } catch (err) {
      this.ctx.log.warn(`replay of ${r.method} ${r.prettyUrl} failed: ${(err as Error).message}`);
    }
  }
}
