/**
 * Which addons make up a sluice, in hook order. The proxy (proxy/master.ts) runs whatever it is
 * given; choosing the features is wiring, and wiring lives here.
 */
import type { Addon } from "../core/addons.js";
import { CoreCommands } from "../addons/core-commands.js";
import { MapRemote } from "../addons/map-remote.js";
import { MapLocal } from "../addons/map-local.js";
import { ModifyHeaders } from "../addons/modify-headers.js";
import { ModifyBody } from "../addons/modify-body.js";
import { AntiCache } from "../addons/anticache.js";
import { AntiComp } from "../addons/anticomp.js";
import { StickyAuth } from "../addons/sticky-auth.js";
import { StickyCookie } from "../addons/sticky-cookie.js";
import { UpstreamAuth } from "../addons/upstream-auth.js";
import { Block } from "../addons/block.js";
import { ProxyAuth } from "../addons/proxy-auth.js";
import { TermLog } from "../addons/termlog.js";
import { ReadFile } from "../addons/readfile.js";
import { HarDump } from "../addons/har-dump.js";
import { Export } from "../addons/export.js";
import { CutOutput } from "../addons/cut-output.js";
import { Scripts } from "../addons/scripts.js";
import { Intercept } from "../addons/intercept.js";
import { Save } from "../addons/save.js";
import { ServerReplay } from "../addons/server-replay.js";
import { ClientReplay } from "../addons/client-replay.js";
import { Shaping } from "../addons/shaping.js";
import { Faults } from "../addons/faults.js";
import { AdminApi } from "../addons/admin-api.js";
import { Retries } from "../addons/retries.js";
import { Metrics } from "../addons/metrics.js";
import { FleetOps } from "../fleet/fleet-ops.js";
// AWS knowledge brings the AWS filter operators (~svc, ~op, …) with it, for every front end.
import "../aws/index.js";

/**
 * The addons every proxy front end loads, in hook order (README "Order of the addon chain"): user
 * scripts first, as in mitmproxy, so they see the request the client sent and everything after
 * them acts on what they changed; then the addons that change traffic; then those that only
 * observe it, so what a client receives is what is counted, saved and shown. The output addon
 * (dump, console, …) comes last; `cut` is given when --cut rows go elsewhere than stdout.
 */
export function frontEndAddons(output: Addon, cut: CutOutput = new CutOutput()): Addon[] {
  return [
    // Who may use the proxy is settled before any addon (or script) sees a request, as in mitmproxy.
    new TermLog(), new Block(), new ProxyAuth(), new ReadFile(), new CoreCommands(), new ClientReplay(), new Scripts(),
    // Traffic changers first, in mitmproxy's order (anticache … stickycookie), then sluice's own.
    new AntiCache(), new AntiComp(), new MapRemote(), new MapLocal(), new ModifyBody(), new ModifyHeaders(), new StickyAuth(), new StickyCookie(), new UpstreamAuth(),
    new Shaping(), new Faults(), new AdminApi(), new FleetOps(), new ServerReplay(), new Intercept(), new Retries(), new Metrics(), new Save(), new HarDump(), new Export(), cut, output,
  ];
}
