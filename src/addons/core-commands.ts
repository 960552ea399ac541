/** Built-in commands: flow.set, flow.mark, flow.kill, flow.resume, set, … on the shared view. */
import type { Addon, AddonContext } from "../core/addons.js";
import { CommandError, setFlowAttribute } from "../core/commands.js";
import type { HTTPFlow } from "../core/flow.js";
import { formatOptionValue } from "../core/options.js";

export class CoreCommands implements Addon {
  name = "core_commands";

  load(ctx: AddonContext): void {
    const { commands, view } = ctx;
    const count = (flows: HTTPFlow[], what: string) => `${what} ${flows.length} flow${flows.length === 1 ? "" : "s"}`;
    commands.add({
      name: "flow.set",
      help: "Set an attribute of flows: status_code, reason, method, url, path, host, port, scheme, request.body, response.body, request.header.NAME, response.header.NAME, comment",
      params: [{ name: "flows", type: "flows" }, { name: "attr", type: "string" }, { name: "value", type: "rest" }],
      run: (flows: HTTPFlow[], attr: string, value: string) => {
        for (const f of flows) {
          setFlowAttribute(f, attr, value);
          view.update(f);
        }
        return count(flows, "updated");
      },
    });
    commands.add({
      name: "flow.mark",
      help: "Mark flows (MARKER defaults to :default:)",
      params: [{ name: "flows", type: "flows" }, { name: "marker", type: "string", optional: true }],
      run: (flows: HTTPFlow[], marker?: string) => {
        for (const f of flows) {
          f.marked = marker ?? ":default:";
          view.update(f);
        }
        return count(flows, "marked");
      },
    });
    commands.add({
      name: "flow.mark.toggle",
      help: "Toggle the mark on flows",
      params: [{ name: "flows", type: "flows" }],
      run: (flows: HTTPFlow[]) => {
        for (const f of flows) {
          f.marked = f.marked ? "" : ":default:";
          view.update(f);
        }
        return count(flows, "toggled");
      },
    });
    commands.add({
      name: "flow.unmark",
      help: "Remove the mark from flows",
      params: [{ name: "flows", type: "flows" }],
      run: (flows: HTTPFlow[]) => {
        for (const f of flows) {
          f.marked = "";
          view.update(f);
        }
        return count(flows, "unmarked");
      },
    });
    commands.add({
      name: "flow.comment",
      help: "Set the comment of flows",
      params: [{ name: "flows", type: "flows" }, { name: "text", type: "rest" }],
      run: (flows: HTTPFlow[], text: string) => {
        for (const f of flows) {
          f.comment = text;
          view.update(f);
        }
        return count(flows, "commented");
      },
    });
    commands.add({
      name: "flow.kill",
      help: "Kill live flows: their connection is dropped",
      params: [{ name: "flows", type: "flows" }],
      run: (flows: HTTPFlow[]) => {
        const live = flows.filter((f) => f.live || f.intercepted);
        for (const f of live) {
          f.kill();
          view.update(f);
        }
        return count(live, "killed");
      },
    });
    commands.add({
      name: "flow.resume",
      help: "Resume intercepted flows",
      params: [{ name: "flows", type: "flows" }],
      run: (flows: HTTPFlow[]) => {
        const paused = flows.filter((f) => f.intercepted);
        for (const f of paused) {
          f.resume();
          view.update(f);
        }
        return count(paused, "resumed");
      },
    });
    commands.add({
      name: "flow.delete",
      help: "Remove flows from the view (live flows are killed first)",
      params: [{ name: "flows", type: "flows" }],
      run: (flows: HTTPFlow[]) => {
        for (const f of flows) {
          if (f.live || f.intercepted) f.kill();
          view.remove(f);
        }
        return count(flows, "deleted");
      },
    });
    commands.add({
      name: "flow.duplicate",
      help: "Duplicate flows in the view",
      params: [{ name: "flows", type: "flows" }],
      run: (flows: HTTPFlow[]) => {
        for (const f of flows) view.add(f.copy());
        return count(flows, "duplicated");
      },
    });
    commands.add({
      name: "view.clear",
      help: "Remove every flow from the view",
      params: [],
      run: () => {
        view.clear();
        return "view cleared";
      },
    });
    commands.add({
      name: "view.focus",
      help: "Focus a flow by id",
      params: [{ name: "flows", type: "flows" }],
      run: (flows: HTTPFlow[]) => {
        if (!flows[0]) throw new CommandError("view.focus: no such flow");
        view.focusId = flows[0].id;
        return `focused ${flows[0].id}`;
      },
    });
    commands.add({
      name: "set",
      help: "Set an option: set NAME=VALUE (or set NAME VALUE)",
      params: [{ name: "assignment", type: "rest" }],
      run: async (assignment: string) => {
        const m = /^([\w.]+)\s*(?:=|\s)\s*([\s\S]*)$/.exec(assignment.trim());
        if (!m) throw new CommandError("set: expected NAME=VALUE");
        try {
          // An addon that refuses the value leaves the old one in place (Options rolls it back).
          await ctx.options.set(m[1]!, m[2]!);
        } catch (err) {
          const still = ctx.options.has(m[1]!) ? `; ${m[1]} is still ${JSON.stringify(formatOptionValue(ctx.options.get(m[1]!)))}` : "";
          throw new CommandError(`set: ${(err as Error).message}${still}`);
        }
        return `${m[1]} = ${formatOptionValue(ctx.options.get(m[1]!))}`;
      },
    });
    commands.add({
      name: "options",
      help: "List options and their current values",
      params: [],
      run: () => ctx.options.all().map((o) => `${o.name} = ${formatOptionValue(ctx.options.get(o.name))}`).join("\n"),
    });
    commands.add({
      name: "commands",
      help: "List commands",
      params: [],
      run: () => commands.list().map((c) => `${commands.usage(c)}\n    ${c.help}`).join("\n"),
    });
  }
}
