/**
 * prom-client's registry and the three metric kinds sluice uses, loaded from their own files
 * rather than the package's index. The index also loads the default process metrics (with
 * @opentelemetry/api), the cluster aggregator (node:cluster), the Pushgateway client and Summary's
 * t-digest: ~80 files and ~6 MB of RSS at start that `sluice dump` never uses (issue 20: idle RSS
 * ≤ 70 MB). These four files are ~0.3 MB. The classes are prom-client's own (the same module
 * instances the index exports), so `ctx.metrics` is a real prom-client Registry for scripts too.
 */
import { createRequire } from "node:module";
import type * as PromClient from "prom-client";

const require = createRequire(import.meta.url);

export const Registry = require("prom-client/lib/registry") as typeof PromClient.Registry;
export type Registry = PromClient.Registry;
export const Counter = require("prom-client/lib/counter") as typeof PromClient.Counter;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export const Gauge = require("prom-client/lib/gauge") as typeof PromClient.Gauge;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
export const Histogram = require("prom-client/lib/histogram") as typeof PromClient.Histogram;
export type Histogram<T extends string = string> = PromClient.Histogram<T>;
