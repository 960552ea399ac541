/**
 * Packages loaded on first use instead of at start. `sluice dump` should sit small beside the
 * jobs it watches (issue 20: idle RSS ≤ 70 MB), and each of these costs 5–20 MB of RSS once
 * loaded while most runs never need it: ioredis (fleet only), ws (WebSocket traffic only),
 * node-forge (PKCS#12 files written once), better-sqlite3 (SQLite captures), yaml (a config or
 * rules file), tinyglobby (globs in `sluice report`), undici's whole package (client replay; the
 * proxy itself loads only undici's Client). All are CommonJS, so a synchronous require
 * loads them at the point of use.
 */
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/** A getter for the package `name`, required the first time it is called. */
export function lazyModule<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= require(name) as T);
}
