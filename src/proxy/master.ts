/**
 * Runs a sluice: options, addons, CA and the listener. Which addons make up a front end (dump,
 * console, web) is decided in cli/ (cli/wiring.ts); the master only runs what it is given.
 */
import { join } from "node:path";
import { AddonManager, type Addon, type AddonContext, type ProxyListener } from "../core/addons.js";
import { CORE_OPTIONS, checkCoreValues, type CoreOptions } from "../core/builtin-options.js";
import { LineLogger } from "../core/log.js";
import { Options } from "../core/options.js";
import { CommandManager } from "../core/commands.js";
import { FlowView, type ViewLimits } from "../core/view.js";
import { OwnListeners } from "../core/own-listeners.js";
import { CLIENT_LIMIT_OPTIONS, type ClientLimitOptions } from "./client-limits.js";
import { InProcessState, type SharedState } from "../core/shared-state.js";
import { FLEET_OPTIONS, type FleetOptions } from "../fleet/options.js";
import { joinFleet, type Fleet } from "../fleet/start.js";
import { CONFIG_FILE, loadConfigFile } from "../core/config-file.js";
import { compileFilter, setFilterNotice } from "../core/filter.js";
import { Registry } from "../core/prometheus.js";
import { CertificateAuthority } from "./tls/ca.js";
import { ProxyServer } from "./server.js";
import { describeMode, listenAddresses, parseModes } from "./mode.js";
import type { ProxyContext } from "./context.js";
import type { AddressInfo } from "node:net";

/** Options that decide the listeners. */
const LISTENER_OPTIONS = ["mode", "listen_host", "listen_port", "backlog"];

export interface MasterInit {
  /** Option values as strings, parsed by type (as with --set). */
  set?: Record<string, string>;
  /** Typed option values. */
  values?: Record<string, unknown>;
  addons?: Addon[];
  log?: LineLogger;
  /** Where rate budgets and adaptive rates live (default: this process's memory). */
  state?: SharedState;
  /** Default size of the flow view (`view_max_flows`, `view_max_bytes`); `sluice dump` keeps a small one. */
  view?: ViewLimits;
}

export class Master {
  readonly options = new Options();
  /** Typed reads of the options the proxy itself uses (`master.core.listen_port`). */
  readonly core: CoreOptions & ClientLimitOptions;
  /** shared_state, fleet, …: read once at start (fleet/start.ts). */
  readonly fleetOptions: FleetOptions;
  /** The fleet this process joined (shared_state set), or null. */
  fleet: Fleet | null = null;
  readonly log: LineLogger;
  readonly addons: AddonManager;
  ca!: CertificateAuthority;
  /** One listener per `--mode`, in the order given; the first is "the proxy" for replay and the front ends. */
  servers: ProxyServer[] = [];
  readonly context: AddonContext;
  /** The flows this front end knows about; commands select from it. */
  readonly view: FlowView;
  readonly commands = new CommandManager(() => this.view);
  /** Every address sluice listens on; the proxy refuses to forward to them. */
  readonly ownListeners = new OwnListeners();

  constructor(init: MasterInit = {}) {
    this.view = new FlowView(init.view);
    this.log = init.log ?? new LineLogger();
    setFilterNotice((m) => this.log.warn(m));
    this.addons = new AddonManager(this.log);
    this.core = this.options.register({ ...CORE_OPTIONS, ...CLIENT_LIMIT_OPTIONS });
    this.fleetOptions = this.options.register(FLEET_OPTIONS);
    this.context = { options: this.options, core: this.core, log: this.log, addons: this.addons, commands: this.commands, view: this.view, filter: compileFilter, metrics: new Registry(), state: init.state ?? new InProcessState(), listener: () => this.listener(), ownListeners: this.ownListeners };
    this.pendingAddons = [this.view, ...(init.addons ?? [])];
    this.init = init;
  }

  private pendingAddons: Addon[];
  private init: MasterInit;
  private configured = false;

  /** Loads addons and applies options; throws with a user-facing message on bad configuration. */
  async configure(): Promise<void> {
    if (this.configured) return;
    this.configured = true;
    for (const addon of this.pendingAddons) {
      this.addons.add(addon);
      await addon.load?.(this.context);
    }
    this.pendingAddons = [];
    // The config file sets defaults; the command line wins over it.
    const confdir = this.init.set?.confdir ?? (this.init.values?.confdir as string | undefined) ?? this.core.confdir;
    for (const [name, value] of Object.entries(loadConfigFile(confdir))) {
      if (this.init.set?.[name] !== undefined) continue;
      try {
        this.options.set(name, value, true);
      } catch (err) {
        // Without the file's name a bad value there reads as if it were on the command line.
        throw new Error(`config file ${join(confdir, CONFIG_FILE)}: ${(err as Error).message}`);
      }
    }
    for (const [name, value] of Object.entries(this.init.set ?? {})) this.options.set(name, value, true);
    if (this.init.values) this.options.update(this.init.values);
    // A bad mode, or two on one address, is a usage error, before any CA is made.
    this.listenPlan();
    checkCoreValues(this.core);
    // The fleet first: rules built by the addons below take their budgets from its shared state.
    if (!this.init.state) {
      this.fleet = await joinFleet(this.fleetOptions, this.log);
      if (this.fleet?.state) this.context.state = this.fleet.state;
    }
    const all = new Set(this.options.all().map((o) => o.name));
    // A copy: configuring the scripts addon loads scripts, which adds (and configures) their addons.
    for (const addon of [...this.addons.list]) await addon.configure?.(all);
    // Only now: scripts register options of their own while they load.
    const unknown = this.options.unknownDeferred();
    if (unknown.length) throw new Error(`unknown option${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}: see \`sluice options\``);
    // From now on a change goes to every addon; one that refuses it rolls it back (see Options.update).
    this.options.onChange((changed) => {
      for (const name of Object.keys(FLEET_OPTIONS)) if (changed.has(name)) throw new Error(`${name} is read at start: restart sluice to change it`);
      // The listeners are made at start; a new value would otherwise be shown but never used.
      for (const name of LISTENER_OPTIONS) if (changed.has(name) && this.servers.length) throw new Error(`${name} is read when the listeners start: restart sluice to change it`);
      return this.addons.configure(changed);
    });
  }

  private listenPlan() {
    return listenAddresses(parseModes(this.core.mode), this.core.listen_host, this.core.listen_port, this.options.isExplicit("listen_port"));
  }

  /** The first listener (of the first --mode), or null before start. */
  get server(): ProxyServer | null {
    return this.servers[0] ?? null;
  }

  /** For addons that send through the proxy (client replay): the first HTTP proxy listener (regular or upstream), else the first. */
  private listener(): ProxyListener | null {
    const http = this.servers.find((s) => s.mode.kind === "regular" || s.mode.kind === "upstream") ?? this.server;
    const address = http?.address();
    return address && this.ca ? { address: address.address, port: address.port, caCertFile: this.ca.files.certPem } : null;
  }

  /**
   * Configures (if not yet), creates the CA if needed and starts one listener per mode. Returns
   * the first listener's address; `listening()` has all of them.
   */
  async start(): Promise<AddressInfo> {
    await this.configure();
    this.ca = CertificateAuthority.loadOrCreate(this.core.confdir, (m) => this.log.info(m));
    const ctx: ProxyContext = { options: this.options, core: this.core, addons: this.addons, log: this.log, ca: this.ca, ownListeners: this.ownListeners };
    try {
      for (const { mode, host, port } of this.listenPlan()) {
        const server = new ProxyServer(ctx, mode);
        await server.listen(host, port);
        this.servers.push(server);
      }
    } catch (err) {
      await Promise.all(this.servers.map((s) => s.close()));
      this.servers = [];
      throw err;
    }
    this.fleet?.connection.announce();
    await this.addons.trigger("running");
    return this.servers[0]!.address();
  }

  /** Every listener: its mode spec and address. */
  listening(): { mode: string; address: AddressInfo }[] {
    return this.servers.map((s) => ({ mode: s.mode.spec, address: s.address() }));
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.close()));
    await this.addons.trigger("done");
    await this.fleet?.close();
  }
}

/** "sluice MODE proxy listening at HOST:PORT", one line per listener (tests and scripts read the port from it). */
export function listeningLines(master: Master): string[] {
  return master.listening().map(({ mode, address }) => `sluice ${describeMode(mode)} proxy listening at ${address.address.includes(":") ? `[${address.address}]` : address.address}:${address.port}`);
}
