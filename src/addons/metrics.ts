/**
 * Live metrics out of the proxy: `metrics_port` serves the proxy's Prometheus registry (every
 * addon's `sluice_*` counters) at http://127.0.0.1:PORT/metrics, and `statsd=host:port` sends the
 * same counters as StatsD lines over UDP (counter increments as `|c`, plus per-request duration
 * and per-retry back-off as `|ms` timings), batched into a few datagrams per second.
 *
 * In a fleet (`shared_state` set) or with `instance` given, every series carries an `instance`
 * label naming the process (the option, else HOSTNAME:PID), in Prometheus and in StatsD, so the
 * series of N sidecars can be told apart and summed.
 */
import http from "node:http";
import dgram from "node:dgram";
import { isIP } from "node:net";
import type { Registry } from "prom-client";
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";
import { flowEnd, labelsOf, type RetryMetadata } from "../aws/index.js";
import { FLEET_OPTIONS, instanceLabel } from "../fleet/options.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

/** Datagrams stay under a typical MTU so no line is lost to fragmentation. */
const MAX_DATAGRAM = 1400;

/** The options this addon owns, declared once (names, types, defaults, help). */
export const METRICS_OPTIONS = declareOptions({
  metrics_port: { type: "int", default: -1, help: "Serve Prometheus metrics at http://127.0.0.1:PORT/metrics; -1 off, 0 picks a free port (logged)" },
  statsd: { type: "optional-string", default: null, help: "Send the metrics as StatsD lines over UDP to HOST:PORT, e.g. 127.0.0.1:8125" },
  statsd_prefix: { type: "string", default: "sluice", help: "First component of every StatsD metric name" },
  statsd_tags: { type: "bool", default: false, help: "StatsD with DogStatsD tags (name|c|#service:s3,…) instead of labels in the name (sluice.requests.s3.ListBuckets.200)" },
});

export class Metrics implements Addon {
  name = "metrics";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof METRICS_OPTIONS>;
  private server: http.Server | null = null;
  private serving = 0;
  private unregister: (() => void) | null = null;
  private statsd: StatsdSink | null = null;
  private isRunning = false;
  /** Labels on every series: `instance` in a fleet. */
  private defaultLabels: Record<string, string> = {};

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(METRICS_OPTIONS);
  }

  async configure(updated: Set<string>): Promise<void> {
    const fleet = this.ctx.options.lookup(FLEET_OPTIONS);
    if ((updated.has("instance") || updated.has("shared_state")) && fleet) {
      const given = fleet.instance;
      const inFleet = fleet.shared_state !== "";
      this.defaultLabels = given || inFleet ? { instance: instanceLabel(given) } : {};
      this.ctx.metrics.setDefaultLabels(this.defaultLabels);
    }
    const port = this.opts.metrics_port;
    if (updated.has("metrics_port") && (port < -1 || port > 65535)) throw new Error(`metrics_port must be a port from 0 to 65535 (0 picks a free one) or -1 for off, got ${port}`);
    if (updated.has("statsd") || updated.has("statsd_prefix") || updated.has("statsd_tags")) {
      const spec = this.opts.statsd;
      if (spec) parseHostPort(spec); // reports a bad value now, not when running
      const prefix = this.opts.statsd_prefix;
      if (!/^[A-Za-z0-9_.-]+$/.test(prefix)) throw new Error(`statsd_prefix may hold letters, digits, _ - and . only, got ${JSON.stringify(prefix)}`);
    }
    if (!this.isRunning) return;
    if (updated.has("metrics_port")) await this.serve(port);
    if (updated.has("statsd") || updated.has("statsd_prefix") || updated.has("statsd_tags")) await this.startStatsd();
  }

  async running(): Promise<void> {
    this.isRunning = true;
    await this.serve(this.opts.metrics_port);
    await this.startStatsd();
  }

  response(flow: HTTPFlow): void {
    this.time(flow);
  }

  error(flow: HTTPFlow): void {
    if (!flow.response) this.time(flow);
  }

  async done(): Promise<void> {
    this.isRunning = false;
    await this.serve(-1);
    await this.statsd?.close();
    this.statsd = null;
  }

  /** Where the metrics endpoint listens, once it does. */
  get port(): number {
    return this.serving;
  }

  private time(flow: HTTPFlow): void {
    if (!this.statsd) return;
    const labels = labelsOf(flow);
    this.statsd.timing("request_duration", labels, (flowEnd(flow) - flow.request.timestampStart) * 1000);
    const retry = flow.metadata.retry as RetryMetadata | undefined;
    if (retry && typeof retry.backoffMs === "number") this.statsd.timing("backoff", labels, retry.backoffMs);
  }

  private async serve(port: number): Promise<void> {
    if (this.server && this.serving === port) return;
    if (this.server) {
      const old = this.server;
      this.server = null;
      this.serving = 0;
      this.unregister?.();
      this.unregister = null;
      old.closeAllConnections();
      await new Promise<void>((resolve) => old.close(() => resolve()));
    }
    if (port < 0) return;
    const registry = this.ctx.metrics;
    const server = http.createServer((req, res) => void answer(registry, req, res));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        // Loopback only: metrics name the services and operations a machine talks to.
        server.listen(port, "127.0.0.1", () => resolve());
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code === "EADDRINUSE" ? "the port is in use" : e.code === "EACCES" ? "permission denied" : e.message;
      this.ctx.log.error(`cannot serve metrics on 127.0.0.1:${port}: ${why}; choose another metrics_port`);
      return;
    }
    this.server = server;
    this.serving = (server.address() as { port: number }).port;
    this.unregister = this.ctx.ownListeners.register("metrics", server.address() as { address: string; port: number });
    this.ctx.log.info(`Prometheus metrics at http://127.0.0.1:${this.serving}/metrics`);
  }

  private async startStatsd(): Promise<void> {
    await this.statsd?.close();
    this.statsd = null;
    const spec = this.opts.statsd;
    if (!spec) return;
    const { host, port } = parseHostPort(spec);
    this.statsd = new StatsdSink(this.ctx.metrics, host, port, this.opts.statsd_prefix, this.opts.statsd_tags, () => this.defaultLabels, (m) => this.ctx.log.warn(m));
    this.ctx.log.info(`sending StatsD metrics to ${host}:${port} (UDP)`);
  }
}

async function answer(registry: Registry, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const path = (req.url ?? "/").split("?")[0];
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("only GET /metrics\n");
    return;
  }
  if (path !== "/metrics") {
    res.writeHead(404, { "content-type": "text/plain" }).end("sluice serves Prometheus metrics at /metrics\n");
    return;
  }
  try {
    const text = await registry.metrics();
    res.writeHead(200, { "content-type": registry.contentType });
    res.end(req.method === "HEAD" ? undefined : text);
  } catch (err) {
    res.writeHead(500, { "content-type": "text/plain" }).end(`cannot collect metrics: ${(err as Error).message}\n`);
  }
}

/** "host:port" or "[v6]:port" → parts; throws a one-line message on anything else. */
export function parseHostPort(spec: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(spec.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw new Error(`option statsd expects HOST:PORT (e.g. 127.0.0.1:8125), got ${JSON.stringify(spec)}`);
  return { host: m[1] ?? m[2]!, port };
}

/** StatsD names: label values become dot-separated parts, so only safe characters survive. */
function part(value: string): string {
  return value.replace(/[^A-Za-z0-9_-]+/g, "_") || "_";
}

/**
 * Counter deltas of a Prometheus registry, and timings, as StatsD lines. Counters are read from
 * the registry at each flush, so every `sluice_*_total` counter any addon registers is sent.
 */
class StatsdSink {
  private readonly socket: dgram.Socket;
  private readonly last = new Map<string, number>();
  private lines: string[] = [];
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;
  private warned = false;

  constructor(
    private readonly registry: Registry,
    private readonly host: string,
    private readonly port: number,
    private readonly prefix: string,
    private readonly tags: boolean,
    /** Labels the registry adds to every series, which timings (not in the registry) need too. */
    private readonly defaultLabels: () => Record<string, string>,
    private readonly warn: (m: string) => void,
  ) {
    this.socket = dgram.createSocket(isIP(host) === 6 ? "udp6" : "udp4");
    this.socket.on("error", (err) => this.warnOnce(`StatsD: ${err.message}`));
    this.timer = setInterval(() => void this.flush(), 1000);
    this.timer.unref();
  }

  timing(name: string, labels: { service: string; operation: string }, ms: number): void {
    this.lines.push(this.line(name, { ...labels, ...this.defaultLabels() }, `${Math.max(0, Math.round(ms))}|ms`));
  }

  flush(): Promise<void> {
    this.flushing ??= this.flushNow().finally(() => (this.flushing = null));
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }

  private async flushNow(): Promise<void> {
    for (const metric of await this.registry.getMetricsAsJSON()) {
      if (String(metric.type) !== "counter" || !metric.name.startsWith("sluice_")) continue;
      const name = metric.name.replace(/^sluice_/, "").replace(/_total$/, "");
      for (const v of metric.values) {
        const labels = v.labels as Record<string, string | number>;
        const key = `${metric.name}${JSON.stringify(labels)}`;
        const delta = v.value - (this.last.get(key) ?? 0);
        this.last.set(key, v.value);
        if (delta > 0) this.lines.push(this.line(name, labels, `${Number.isInteger(delta) ? delta : delta.toFixed(3)}|c`));
      }
    }
    if (this.lines.length === 0) return;
    const lines = this.lines;
    this.lines = [];
    let packet = "";
    const sends: Promise<void>[] = [];
    for (const line of lines) {
      if (packet && packet.length + 1 + line.length > MAX_DATAGRAM) {
        sends.push(this.send(packet));
        packet = "";
      }
      packet = packet ? `${packet}\n${line}` : line;
    }
    if (packet) sends.push(this.send(packet));
    await Promise.all(sends);
  }

  private line(name: string, labels: Record<string, string | number>, value: string): string {
    const values = Object.entries(labels);
    if (this.tags) {
      const tagText = values.map(([k, v]) => `${k}:${String(v).replace(/[,|#\s]/g, "_")}`).join(",");
      return `${this.prefix}.${name}:${value}${tagText ? `|#${tagText}` : ""}`;
    }
    return [this.prefix, name, ...values.map(([, v]) => part(String(v)))].join(".") + `:${value}`;
  }

  private send(packet: string): Promise<void> {
    return new Promise((resolve) => {
      this.socket.send(packet, this.port, this.host, (err) => {
        if (err) this.warnOnce(`StatsD: cannot send to ${this.host}:${this.port}: ${err.message}`);
        resolve();
      });
    });
  }

  private warnOnce(message: string): void {
    if (this.warned) return;
    this.warned = true;
    this.warn(message);
  }
}
