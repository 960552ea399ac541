/** Runs real programs (curl, python3, aws, mitmdump) for tests, with a timeout and captured output. */
import { spawn } from "node:child_process";
import { pythonWith } from "./needs.js";

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
    });
    // A program that exits without reading its input (truncate, rm) closes the pipe first: that is not an error.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

/** Environment for SDK clients: fake credentials, no metadata lookups, nothing inherited that points elsewhere. */
export function awsEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (/^(AWS_|HTTPS?_PROXY|https?_proxy|NO_PROXY|no_proxy|ALL_PROXY|all_proxy)/.test(k)) delete env[k];
  return {
    ...env,
    AWS_ACCESS_KEY_ID: "AKIDEXAMPLE",
    AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    AWS_DEFAULT_REGION: "eu-west-1",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_CONFIG_FILE: "/dev/null",
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    ...extra,
  };
}

/**
 * The machine's python3 if it has boto3 (pyenv's does), else Debian's /usr/bin/python3 with python3-boto3.
 * A test that calls this skips with needsPython("boto3", "python3-boto3") when neither has it.
 */
export async function pythonWithBoto3(): Promise<string> {
  const python = pythonWith("boto3");
  if (!python) throw new Error("no python3 with boto3: install it with `apt-get install -y python3-boto3`");
  return python;
}

/**
 * Python to put first in a boto3 script whose threads open connections at once. urllib3 sets ALPN
 * on the one SSLContext its pool shares for every new connection (ssl_wrap_socket), and OpenSSL's
 * SSL_CTX_set_alpn_protos frees the old list while another thread's SSL_new, which CPython runs
 * without the GIL, may be copying it: that thread's ClientHello then carries freed heap bytes as
 * its ALPN list, and the server (sluice, as any OpenSSL) refuses it with alert decode_error, so the
 * thread fails with TLSV1_ALERT_DECODE_ERROR (measured here: 1 hello in ~100,000 from five
 * threads doing what urllib3 does, 1 in ~9,000 with a thread setting ALPN all the time; with this
 * guard 0 in 200,000; see test/tls-malformed-hello). Setting the same protocols again does nothing here, so
 * once set the list is never freed. A client bug, not sluice's: sluice logs such hellos as malformed.
 */
export const PYTHON_ALPN_RACE_GUARD = `
import ssl as _ssl, threading as _threading
_alpn_lock = _threading.Lock()
_set_alpn = _ssl.SSLContext.set_alpn_protocols
def _set_alpn_once(self, protocols):
    with _alpn_lock:
        if getattr(self, "_alpn_set", None) != list(protocols):
            _set_alpn(self, protocols)
            self._alpn_set = list(protocols)
_ssl.SSLContext.set_alpn_protocols = _set_alpn_once
`;
