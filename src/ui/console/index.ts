/**
 * `sluice` (or `sluice console`): the interactive console on a running Master. Loaded lazily by
 * the CLI so `sluice dump` never pays for React and ink.
 */
import type { Master } from "../../proxy/master.js";
import type { ConsoleAddon } from "./console-addon.js";
import { ConsoleModel } from "./model.js";
import { ConsoleController } from "./controller.js";
import { TerminalModes } from "./terminal.js";
import { listeningLines } from "../../proxy/master.js";

export { ConsoleAddon } from "./console-addon.js";

/** Redraws per second at most: smooth to the eye, cheap with thousands of flows per second. */
const FPS = 15;

/** Whether the console may use colour: not when NO_COLOR is set (https://no-color.org) or TERM=dumb. */
export function colourWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return !env.NO_COLOR && env.TERM !== "dumb";
}

/** Runs the console until the user quits; the caller then stops the proxy. */
export async function runConsoleUi(master: Master, addon: ConsoleAddon, listen: string): Promise<void> {
  // ink decides once, when it is imported, whether it runs in CI (then it only prints the last
  // frame). A user at a terminal is interactive even if CI is set in the environment.
  const saved = { CI: process.env.CI, CONTINUOUS_INTEGRATION: process.env.CONTINUOUS_INTEGRATION };
  delete process.env.CI;
  delete process.env.CONTINUOUS_INTEGRATION;
  let ink: typeof import("ink"), react: typeof import("react"), appModule: typeof import("./app.js");
  try {
    [ink, react, appModule] = await Promise.all([import("ink"), import("react"), import("./app.js")]);
  } finally {
    for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
  }

  const terminal = new TerminalModes();
  const model = new ConsoleModel(master);
  addon.onChange = () => model.touch();
  let quit!: () => void;
  const quitting = new Promise<void>((resolve) => (quit = resolve));
  const controller = new ConsoleController(model, { listen, quit: () => quit(), suspend: (fn) => terminal.suspend(fn) });
  for (const line of listeningLines(master)) master.log.info(line);
  master.log.info(`CA certificate for clients: ${master.ca.files.certPem}`);

  terminal.enter();
  const restoreStderr = captureStderr(master);
  const onSignal = () => quit();
  const onResize = () => terminal.clear();
  const onCrash = (err: unknown) => {
    restoreStderr();
    terminal.restore();
    process.stderr.write(`sluice: console crashed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  process.on("SIGINT", onSignal);
  process.on("uncaughtException", onCrash);
  process.stdout.prependListener("resize", onResize);
  const instance = ink.render(react.createElement(appModule.App, { controller, colour: colourWanted(), fps: FPS }), {
    exitOnCtrlC: false,
    patchConsole: true,
    maxFps: FPS,
  });
  try {
    await Promise.race([quitting, instance.waitUntilExit()]);
  } finally {
    instance.unmount();
    restoreStderr();
    terminal.restore();
    process.stdout.off("resize", onResize);
    process.off("SIGTERM", onSignal);
    process.off("SIGHUP", onSignal);
    process.off("SIGINT", onSignal);
    process.off("uncaughtException", onCrash);
    model.close();
  }
}

/**
 * Some addons report progress straight to stderr (client replay does); over the console's screen
 * that would garble it, so while the console runs such lines go to the event log instead.
 */
function captureStderr(master: Master): () => void {
  const stderr = process.stderr;
  const original = stderr.write;
  stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    for (const line of text.split(/[\r\n]+/)) if (line.trim()) master.log.info(line.trim());
    const callback = rest.find((r): r is () => void => typeof r === "function");
    callback?.();
    return true;
  }) as typeof stderr.write;
  return () => {
    stderr.write = original;
  };
}
