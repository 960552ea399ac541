/** How a flow went, as the console and the web UI colour it (plain data: web/ imports it too). */
export type FlowKind = "fault" | "throttle" | "error" | "client-error" | "ok" | "pending";
