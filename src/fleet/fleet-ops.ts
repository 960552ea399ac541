/**
 * The fleet's operations side as an addon: fault rule sync (fleet/rules-sync.ts) and the heartbeat
 * (fleet/heartbeat.ts). It does nothing unless the process joined a fleet (`shared_state` set);
 * then it shares the fault rules from the first configure on — a start-up rule that clashes with
 * the fleet's stops the start with one line — and beats once the proxy listens.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { Faults } from "../addons/faults.js";
import type { Shaping } from "../addons/shaping.js";
import { fleetConnection, type FleetConnection } from "./connection.js";
import { FleetRulesSync } from "./rules-sync.js";
import { Heartbeat } from "./heartbeat.js";

export class FleetOps implements Addon {
  name = "fleet";
  private ctx!: AddonContext;
  private conn: FleetConnection | null = null;
  private sync: FleetRulesSync | null = null;
  private heartbeat: Heartbeat | null = null;
  private requests = 0;
  private started = false;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
  }

  async configure(updated: Set<string>): Promise<void> {
    if (!this.started) {
      this.started = true;
      this.conn = fleetConnection();
      const faults = this.ctx.addons.get("faults") as Faults | undefined;
      if (!this.conn || !faults) return;
      this.sync = new FleetRulesSync(this.conn, faults, this.ctx.log);
      // Up: a clash is refused before the proxy listens. Not up yet: shared once Redis answers.
      if (this.conn.up) await this.sync.start();
      else {
        const sync = this.sync;
        void sync.start().catch((err: Error) => {
          // Started already: the clashing rule stays local, and the rest follows the fleet.
          this.ctx.log.error(`fleet: ${err.message}`);
          return sync.resync();
        }).catch((err: Error) => this.ctx.log.error(`fleet: fault rules not shared: ${err.message}`));
      }
      return;
    }
    if (this.sync && (updated.has("fault_rules") || updated.has("fault_file"))) {
      // Rules given again at run time are offered to the fleet like start-up rules.
      await this.sync.offerStartupRules();
    }
  }

  running(): void {
    if (!this.conn) return;
    const shaping = () => this.ctx.addons.get("shaping") as Shaping | undefined;
    const faults = () => this.ctx.addons.get("faults") as Faults | undefined;
    this.heartbeat = new Heartbeat(
      this.conn,
      {
        address: () => {
          const l = this.ctx.listener();
          return l ? `${l.address.includes(":") ? `[${l.address}]` : l.address}:${l.port}` : "-";
        },
        // Several --mode listeners at once are listed together.
        mode: () => ([] as string[]).concat(this.ctx.options.get<string[] | string>("mode")).join(", "),
        requests: () => this.requests,
        queueDepth: () => (shaping()?.status() ?? []).reduce((n, r) => n + r.keys.reduce((m, k) => m + k.queued, 0), 0),
        faults: () => (faults()?.list() ?? []).map((f) => ({ id: f.id, rule: f.rule, enabled: f.enabled })),
        shapes: () => (shaping()?.status() ?? []).map((r) => r.text),
      },
      (err) => this.ctx.log.debug(`fleet: heartbeat not written: ${err.message}`),
      (message) => this.ctx.log.warn(`fleet: ${message}`),
    );
    this.heartbeat.start();
  }

  requestHeaders(): void {
    this.requests++;
  }

  async done(): Promise<void> {
    await this.heartbeat?.stop();
    await this.sync?.stop();
    this.heartbeat = null;
    this.sync = null;
  }
}
