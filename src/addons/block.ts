/**
 * `block_global` and `block_private` (mitmproxy's block addon): refuse clients by the address they
 * connect from. Loopback clients (this machine) are always let in. A refused client's connection
 * is closed before anything is read — no answer, as mitmproxy does — with a log line.
 *
 * block_global is on by default, as in mitmproxy: a sluice listening beyond loopback serves only
 * private networks unless told otherwise (`--set block_global=false`, best with --proxyauth).
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { ClientConnection } from "../core/flow.js";
import { addressScope, type AddressScope } from "../core/address-scope.js";
import { declareOptions, type TypedOptions } from "../core/options.js";

/** The options this addon owns (mitmproxy's names and defaults). */
export const BLOCK_OPTIONS = declareOptions({
  block_global: { type: "bool", default: true, help: "Block connections from public (globally routable) IP addresses; loopback is always allowed" },
  block_private: { type: "bool", default: false, help: "Block connections from private IP addresses (10/8, 172.16/12, 192.168/16, fc00::/7, link-local …); loopback is always allowed" },
});

export class Block implements Addon {
  name = "block";
  private ctx!: AddonContext;
  private opts!: TypedOptions<typeof BLOCK_OPTIONS>;

  /** `scopeOf` judges a client's address; tests pass their own, as every test client is on loopback. */
  constructor(private readonly scopeOf: (address: string) => AddressScope | null = addressScope) {}

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    this.opts = ctx.options.register(BLOCK_OPTIONS);
  }

  clientConnected(client: ClientConnection): void {
    const address = client.peername?.[0];
    if (!address) return;
    const scope = this.scopeOf(address);
    if (!scope || scope.loopback) return;
    const option = scope.private && this.opts.block_private ? "block_private" : scope.global && this.opts.block_global ? "block_global" : null;
    if (!option) return;
    const kind = option === "block_private" ? "a private" : "a public";
    this.ctx.log.warn(`client connection from ${client.peername!.join(":")} killed by ${option}: ${kind} address; to serve it, --set ${option}=false (with --proxyauth)`);
    client.error = `Connection killed by ${option}.`;
  }
}
