/**
 * sluice's public API: what addon and script authors import.
 *   import type { Addon, HTTPFlow } from "sluice";
 */
export type { Addon, AddonContext, HookName, Logger, ClientHelloData, ServerConnectData } from "./core/addons.js";
export { HTTPFlow, Request, Response, type ClientConnection, type ServerConnection, type Connection, type FlowError, type WebSocketData, type WebSocketMessage } from "./core/flow.js";
export { Headers } from "./core/headers.js";
export { compileFilter, registerFilterOperator, FilterSyntaxError, type FlowPredicate, type FilterOperator } from "./core/filter.js";
export { Options, type OptionSpec, type OptionType } from "./core/options.js";
export { CommandManager, type CommandSpec, type CommandParam } from "./core/commands.js";
export { FlowView } from "./core/view.js";
export { Master, type MasterInit } from "./proxy/master.js";
export * as aws from "./aws/index.js";
export { Faults, type FaultRuleInfo } from "./addons/faults.js";
export { parseFaultRule, FaultRuleError, type FaultRule, type FaultAction, type FaultTriggers } from "./addons/fault-rules.js";
