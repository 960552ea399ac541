/** What every part of the proxy shares: options, addons, the log and the CA. */
import type { AddonManager, Logger } from "../core/addons.js";
import type { Options } from "../core/options.js";
import type { CoreOptions } from "../core/builtin-options.js";
import type { ClientLimitOptions } from "./client-limits.js";
import type { OwnListeners } from "../core/own-listeners.js";
import type { CertificateAuthority } from "./tls/ca.js";

export interface ProxyContext {
  options: Options;
  /** Typed reads of the options the proxy itself uses: `ctx.core.connect_timeout`. */
  core: CoreOptions & ClientLimitOptions;
  addons: AddonManager;
  log: Logger;
  ca: CertificateAuthority;
  /** Where sluice itself listens (never a forwarding target), and its Via token. */
  ownListeners: OwnListeners;
}
