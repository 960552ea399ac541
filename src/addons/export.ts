/**
 * mitmproxy's export and cut commands: `export FORMAT FLOW`, `export.file FORMAT FLOW PATH`,
 * `export.clip FORMAT FLOW`, `export.formats`, `cut FLOWS CUTS`, `cut.save FLOWS CUTS PATH`,
 * `cut.clip FLOWS CUTS`. A curl or httpie export whose body is not plain text writes the body
 * next to the export (PATH.body) or, for the string and clipboard forms, to a file in the
 * confdir, and the command reads it from there.
 */
import { appendFileSync, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import type { Addon, AddonContext } from "../core/addons.js";
import { CommandError } from "../core/commands.js";
import type { HTTPFlow } from "../core/flow.js";
import { curlCommand, EXPORT_FORMATS, ExportError, httpieCommand, rawFlow, rawRequest, rawResponse, type BodyFileWriter, type ExportFormat } from "../core/export.js";
import { csvRow, CutError, extractCut, parseCuts } from "../core/cut.js";
import { flowsToHar } from "../store/har.js";
import { refuseLiveOutput } from "./save.js";

export function exportFlow(format: string, flow: HTTPFlow, bodyFile: BodyFileWriter): Buffer {
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new CommandError(`no such export format: ${format}; formats: ${EXPORT_FORMATS.join(", ")}`);
  try {
    switch (format as ExportFormat) {
      case "curl":
        return Buffer.from(curlCommand(flow, bodyFile) + "\n");
      case "httpie":
        return Buffer.from(httpieCommand(flow, bodyFile) + "\n");
      case "raw":
        return rawFlow(flow);
      case "raw_request":
        return rawRequest(flow);
      case "raw_response":
        return rawResponse(flow);
      case "har":
        return Buffer.from(JSON.stringify(flowsToHar([flow]), null, 2) + "\n");
    }
  } catch (err) {
    if (err instanceof ExportError) throw new CommandError(`cannot export as ${format}: ${err.message}`);
    throw err;
  }
}

function oneFlow(flows: HTTPFlow[]): HTTPFlow {
  if (flows.length !== 1) throw new CommandError(`export takes exactly one flow, the selector matched ${flows.length}`);
  return flows[0]!;
}

/** The clipboard program of this system, or null. */
function clipboardCommand(): [string, string[]] | null {
  const candidates: [string, string[]][] = [["wl-copy", []], ["xclip", ["-selection", "clipboard"]], ["xsel", ["--clipboard", "--input"]], ["pbcopy", []], ["clip.exe", []]];
  for (const [cmd, args] of candidates) {
    const found = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
    if (found.status === 0) return [cmd, args];
  }
  return null;
}

function copyToClipboard(data: Buffer): void {
  const program = clipboardCommand();
  if (!program) throw new CommandError("no clipboard program found (wl-copy, xclip, xsel, pbcopy): use export.file or cut.save instead");
  const r = spawnSync(program[0], program[1], { input: data });
  if (r.status !== 0) throw new CommandError(`${program[0]} failed: ${r.stderr?.toString().trim() || `exit status ${r.status}`}`);
}

export class Export implements Addon {
  name = "export";
  private ctx!: AddonContext;

  load(ctx: AddonContext): void {
    this.ctx = ctx;
    const { commands } = ctx;
    commands.add({
      name: "export.formats",
      help: "List the export formats",
      params: [],
      run: () => EXPORT_FORMATS.join("\n"),
    });
    commands.add({
      name: "export",
      help: "Export a flow and show it: curl, httpie, raw, raw_request, raw_response or har",
      params: [{ name: "format", type: "string" }, { name: "flow", type: "flows" }],
      run: (format: string, flows: HTTPFlow[]) => exportFlow(format, oneFlow(flows), exportsDirBodyFile(this.ctx.core.confdir, oneFlow(flows))).toString("utf8"),
    });
    commands.add({
      name: "export.file",
      help: "Export a flow to a file (a body curl/httpie cannot carry inline goes to PATH.body)",
      params: [{ name: "format", type: "string" }, { name: "flow", type: "flows" }, { name: "path", type: "rest" }],
      run: (format: string, flows: HTTPFlow[], path: string) => {
        refuseLiveOutput(this.ctx.options, "export.file", path);
        const data = exportFlow(format, oneFlow(flows), (body) => {
          writeFileSync(`${path}.body`, body);
          return `${path}.body`;
        });
        writeFileSync(path, data, format === "curl" || format === "httpie" ? { mode: 0o755 } : undefined);
        return `exported ${format} to ${path}`;
      },
    });
    commands.add({
      name: "export.clip",
      help: "Export a flow to the clipboard",
      params: [{ name: "format", type: "string" }, { name: "flow", type: "flows" }],
      run: (format: string, flows: HTTPFlow[]) => {
        copyToClipboard(exportFlow(format, oneFlow(flows), exportsDirBodyFile(this.ctx.core.confdir, oneFlow(flows))));
        return `copied ${format} to the clipboard`;
      },
    });
    commands.add({
      name: "cut",
      help: "Cut fields from flows as CSV, e.g. cut @all request.method,response.status_code,request.url",
      params: [{ name: "flows", type: "flows" }, { name: "cuts", type: "string" }],
      run: (flows: HTTPFlow[], cuts: string) => cutCsv(flows, checked(cuts)),
    });
    commands.add({
      name: "cut.save",
      help: "Save cuts to a file: one field of one flow as-is, else CSV; +PATH appends",
      params: [{ name: "flows", type: "flows" }, { name: "cuts", type: "string" }, { name: "path", type: "rest" }],
      run: (flows: HTTPFlow[], cutText: string, path: string) => {
        refuseLiveOutput(this.ctx.options, "cut.save", path);
        const cuts = checked(cutText);
        const append = path.startsWith("+");
        const file = append ? path.slice(1) : path;
        if (cuts.length === 1 && flows.length === 1) {
          const v = extractCut(cuts[0]!, flows[0]!);
          const data = Buffer.isBuffer(v) ? v : Buffer.from(v, "utf8");
          if (append && existsSync(file) && statSync(file).size > 0) appendFileSync(file, Buffer.concat([Buffer.from("\n"), data]));
          else (append ? appendFileSync : writeFileSync)(file, data);
          return "saved single cut";
        }
        (append ? appendFileSync : writeFileSync)(file, cutCsv(flows, cuts), "utf8");
        return `saved ${cuts.length} cuts over ${flows.length} flows as CSV`;
      },
    });
    commands.add({
      name: "cut.clip",
      help: "Copy cuts to the clipboard (CSV, or one field of one flow as-is)",
      params: [{ name: "flows", type: "flows" }, { name: "cuts", type: "string" }],
      run: (flows: HTTPFlow[], cutText: string) => {
        const cuts = checked(cutText);
        const single = cuts.length === 1 && flows.length === 1 ? extractCut(cuts[0]!, flows[0]!) : null;
        copyToClipboard(single !== null ? (Buffer.isBuffer(single) ? single : Buffer.from(single)) : Buffer.from(cutCsv(flows, cuts)));
        return "copied cuts to the clipboard";
      },
    });
  }
}

/**
 * Where a body a curl/httpie command cannot carry inline goes when the command is shown or copied
 * (the console, the web UI, `export`, `export.clip`): CONFDIR/exports/FLOW-ID.body, readable only
 * by the user, because a request body may hold secrets.
 */
export function exportsDirBodyFile(confdir: string, flow: HTTPFlow): BodyFileWriter {
  return (body) => {
    const dir = join(confdir, "exports");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `${flow.id}.body`);
    writeFileSync(path, body, { mode: 0o600 });
    return path;
  };
}

function checked(cuts: string): string[] {
  try {
    return parseCuts(cuts);
  } catch (err) {
    if (err instanceof CutError) throw new CommandError(err.message);
    throw err;
  }
}

export function cutCsv(flows: HTTPFlow[], cuts: string[]): string {
  return flows.map((f) => csvRow(cuts.map((c) => extractCut(c, f)))).join("");
}
