/**
 * `--set upstream_auth=user:pass` (mitmproxy's upstream_auth). In reverse mode the requests to the
 * server carry it as `Authorization: Basic …`; in upstream mode the proxy sends it to the upstream
 * proxy as Proxy-Authorization (on CONNECT and on plain requests), which happens in proxy/upstream.ts
 * because that header never crosses a proxy hop.
 */
import type { Addon, AddonContext } from "../core/addons.js";
import type { HTTPFlow } from "../core/flow.js";

export class UpstreamAuth implements Addon {
  name = "upstream_auth";
  private authorization: string | null = null;
  private ctx!: AddonContext;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
  }

  configure(updated: Set<string>): void {
    if (!updated.has("upstream_auth")) return;
    const auth = this.ctx.core.upstream_auth;
    if (auth !== null && !/.+:/.test(auth)) throw new Error(`upstream_auth expects user:pass, got ${JSON.stringify(auth)}`);
    this.authorization = auth ? `Basic ${Buffer.from(auth, "utf8").toString("base64")}` : null;
  }

  requestHeaders(flow: HTTPFlow): void {
    // Per flow: with several --mode listeners only the reverse ones talk to a server in its name.
    if (this.authorization && /^reverse:/i.test(flow.clientConn.proxyMode)) flow.request.headers.set("authorization", this.authorization);
  }
}
