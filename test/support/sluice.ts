/** Starts sluice in-process for tests, with a private confdir, and collects finished flows. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Addon } from "../../src/core/addons.js";
import type { HTTPFlow } from "../../src/core/flow.js";
import { LineLogger } from "../../src/core/log.js";
import { Master } from "../../src/proxy/master.js";
import { MapRemote } from "../../src/addons/map-remote.js";
import { CoreCommands } from "../../src/addons/core-commands.js";
import "../../src/aws/index.js";
import { originCaFile } from "./origins.js";

export interface TestSluice {
  master: Master;
  port: number;
  url: string;
  caCert: string;
  flows: HTTPFlow[];
  logs: string[];
  /** Resolves once `n` flows have finished (response or error). */
  waitForFlows(n: number, timeoutMs?: number): Promise<HTTPFlow[]>;
  close(): Promise<void>;
}

let sharedConfdir: string | null = null;
/** One confdir per test process: the CA is made once, as on a user's machine. */
export function testConfdir(): string {
  sharedConfdir ??= mkdtempSync(join(tmpdir(), "sluice-conf-"));
  return sharedConfdir;
}

export async function startSluice(opts: { set?: Record<string, string>; values?: Record<string, unknown>; addons?: Addon[] } = {}): Promise<TestSluice> {
  const flows: HTTPFlow[] = [];
  const logs: string[] = [];
  const waiters: { n: number; resolve: (f: HTTPFlow[]) => void }[] = [];
  const settle = () => {
    for (const w of [...waiters]) if (flows.length >= w.n) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(flows);
    }
  };
  const collector: Addon = {
    name: "test-collector",
    response(flow) {
      if (!flows.includes(flow)) flows.push(flow);
      settle();
    },
    error(flow) {
      if (!flows.includes(flow)) flows.push(flow);
      settle();
    },
  };
  const log = new LineLogger("debug", (line) => logs.push(line));
  const master = new Master({
    set: { listen_port: "0", confdir: testConfdir(), ssl_verify_upstream_trusted_ca: originCaFile(), ...opts.set },
    values: opts.values,
    addons: [new CoreCommands(), new MapRemote(), ...(opts.addons ?? []), collector],
    log,
  });
  const address = await master.start();
  return {
    master,
    port: address.port,
    url: `http://127.0.0.1:${address.port}`,
    caCert: master.ca.files.certPem,
    flows,
    logs,
    waitForFlows(n, timeoutMs = 10_000) {
      if (flows.length >= n) return Promise.resolve(flows);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`expected ${n} flows, saw ${flows.length}`)), timeoutMs);
        waiters.push({ n, resolve: (f) => { clearTimeout(t); resolve(f); } });
      });
    },
    close: () => master.stop(),
  };
}
