/**
 * The console's place in the addon chain (where `sluice dump` has its output addon): it tells
 * the console model when flows change. The commands behind its keys (`replay.client`,
 * `save.file`, …) belong to the addons that own those features.
 */
import type { Addon } from "../../core/addons.js";

export class ConsoleAddon implements Addon {
  name = "console";
  /** Called whenever a flow changes in a way the list shows. */
  onChange: () => void = () => {};

  requestHeaders(): void {
    this.onChange();
  }
  request(): void {
    this.onChange();
  }
  responseHeaders(): void {
    this.onChange();
  }
  response(): void {
    this.onChange();
  }
  error(): void {
    this.onChange();
  }
  websocketMessage(): void {
    this.onChange();
  }
}
