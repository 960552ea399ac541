/**
 * `sluice report` retry forensics (issue 17): the retry mode of boto3 legacy, standard and adaptive
 * runs, named from a capture; inferred from the attempts when the User-Agent does not say; and the
 * what-if per operation under its stated model — in the text and JSON reports and, rendered in
 * headless Chromium, in the `--html` page.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Response } from "../src/core/flow.js";
import { Faults } from "../src/addons/faults.js";
import { Save } from "../src/addons/save.js";
import { RetryForensics } from "../src/aws/retry-forensics.js";
import { startSluice } from "./support/sluice.js";
import { startScriptedOrigin } from "./support/fake-aws.js";
import { tflow } from "./support/tflow.js";
import { run, awsEnv, pythonWithBoto3 } from "./support/run.js";
import { SLUICE_BIN } from "./support/cli.js";
import type { Page } from "playwright-core";
import { inChromium } from "./support/report-page.js";
import { FlowWriter } from "../src/store/index.js";
import { needs, needsPython } from "./support/needs.js";

/** The text of each row of a table, cells joined by " | ". */
async function rowsOf(page: Page, selector: string): Promise<string[]> {
  const rows = page.locator(`${selector} tbody tr`);
  const out: string[] = [];
  for (let i = 0; i < (await rows.count()); i++) out.push((await rows.nth(i).locator("td").allInnerTexts()).join(" | "));
  return out;
}

/** One SDK attempt of ListBuckets, throttled or not, as boto3 without a retry mode in its User-Agent sends it. */
function attempt(id: string, n: number, max: number, at: number, throttled: boolean, opts: { client?: string; userAgent?: string } = {}) {
  const f = tflow({
    host: "s3.eu-west-1.amazonaws.com", path: "/", start: at, took: 0.01, status: throttled ? 503 : 200, client: opts.client ?? "127.0.0.1",
    reqHeaders: { host: "s3.eu-west-1.amazonaws.com", "user-agent": opts.userAgent ?? "Boto3/1.26.27 md/Botocore#1.29.27", "amz-sdk-invocation-id": id, "amz-sdk-request": n === 1 ? "attempt=1" : `attempt=${n}; max=${max}`, authorization: "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=x" },
    resBody: throttled ? "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>" : "<ListAllMyBucketsResult/>",
  });
  return f;
}

describe("sluice report: retry modes", () => {
  test("inferred from attempts without the User-Agent's retry-mode: 5 attempts legacy, 3 standard or adaptive; the what-if follows its model", () => {
    const legacy = new RetryForensics();
    // Gaps of 0.4, 1.5, 3 and 6 s: within rand×2^(n−1) s.
    const starts = [0, 0.41, 1.92, 4.93, 10.94];
    starts.forEach((s, i) => legacy.add(attempt("a", i + 1, 5, 1000 + s, true)));
    const l = legacy.report();
    assert.equal(l.clients[0]!.mode, "legacy");
    assert.equal(l.clients[0]!.maxAttempts, 5);
    assert.equal(l.clients[0]!.gapsWithinFormula, 4);

    const standard = new RetryForensics();
    for (let c = 0; c < 8; c++) {
      // Every other call succeeds at once; the rest are throttled on the first attempt and pass on the second.
      const id = `c${c}`;
      standard.add(attempt(id, 1, 3, 2000 + c, c % 2 === 0));
      if (c % 2 === 0) standard.add(attempt(id, 2, 3, 2000 + c + 0.3, false));
    }
    const s = standard.report();
    assert.equal(s.clients[0]!.mode, "standard or adaptive");
    assert.match(s.clients[0]!.how, /inferred from 3 attempts/);
    const w = s.whatIf[0]!;
    // 4 throttled of 12 attempts: p = 1/3; standard max 3: 8 × (1/3)^3 expected give-ups.
    assert.equal(w.calls, 8);
    assert.ok(Math.abs(w.throttleRate - 1 / 3) < 1e-9);
    const std3 = w.settings.find((x) => x.setting === "standard, max_attempts=3")!;
    assert.ok(Math.abs(std3.giveUps - 8 / 27) < 1e-9);
    // Back-off: p × E[rand×1] + p² × E[rand×2] = 1/3 × 0.5 + 1/9 × 1, per call.
    assert.ok(Math.abs(std3.backoffSeconds - 8 * (1 / 6 + 1 / 9)) < 1e-9);
  });

  test("--html shows the forensics in Chromium: each client's mode, back-off against its formula, when the retry quota ran out, and the what-if per operation", { skip: needs("/usr/bin/chromium", "chromium") }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-modes-html-"));
    const capture = join(dir, "quota.mitm");
    const html = join(dir, "quota.html");
    const writer = await FlowWriter.open(capture);
    // A standard-mode client: 120 calls throttled twice, then ok. Each costs the quota 10 and gets
    // 5 back, so the 500 tokens are gone at about the 100th call.
    const standardUa = "Boto3/1.35.0 md/Botocore#1.35.0 cfg/retry-mode#standard";
    for (let c = 0; c < 120; c++) {
      const t = 3000 + c * 2;
      writer.write(attempt(`s${c}`, 1, 3, t, true, { client: "10.0.0.1", userAgent: standardUa }));
      writer.write(attempt(`s${c}`, 2, 3, t + 0.3, true, { client: "10.0.0.1", userAgent: standardUa }));
      writer.write(attempt(`s${c}`, 3, 3, t + 0.9, false, { client: "10.0.0.1", userAgent: standardUa }));
    }
    // A legacy client whose gaps (5 s each) are beyond rand × 2^(n−1) s but for the last (up to 8 s).
    for (let n = 1; n <= 5; n++) writer.write(attempt("legacy-1", n, 5, 4000 + (n - 1) * 5.02, n < 5, { client: "10.0.0.2", userAgent: "Boto3/1.35.0 md/Botocore#1.35.0 cfg/retry-mode#legacy" }));
    await writer.close();
    const r = await run(process.execPath, [SLUICE_BIN, "report", capture, "--html", html]);
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse((await run(process.execPath, [SLUICE_BIN, "report", capture, "--json"])).stdout) as { retryModes: { clients: { mode: string; quotaEmptyAt: number | null }[] } };
    const quotaEmptyAt = json.retryModes.clients.find((c) => c.mode === "standard")!.quotaEmptyAt!;
    assert.ok(quotaEmptyAt > 3000 + 90 * 2 && quotaEmptyAt < 3000 + 110 * 2, `the quota ran out near the 100th call: ${quotaEmptyAt}`);
    await inChromium(html, async (page) => {
      const modes = await rowsOf(page, "#retry-modes");
      assert.equal(modes.length, 2, modes.join("\n"));
      const standard = modes.find((m) => m.includes("10.0.0.1"))!;
      assert.match(standard, /\| standard \(User-Agent \(cfg\/retry-mode\)\) \| 3 \| 120 \| matches: 240 of 240 gaps within min\(rand×2\^\(n−1\), 20\) s \| ran out at (\S+) \| 0$/);
      assert.equal(/ran out at (\S+)/.exec(standard)![1], new Date(quotaEmptyAt * 1000).toISOString());
      const legacy = modes.find((m) => m.includes("10.0.0.2"))!;
      assert.match(legacy, /\| legacy \(User-Agent \(cfg\/retry-mode\)\) \| 5 \| 1 \| does not match: 1 of 4 gaps within rand×2\^\(n−1\) s \| not used \(legacy\) \| 0$/);
      const whatIf = await page.locator("#what-if").innerText();
      assert.match(whatIf, /s3 ListBuckets\n+121 calls, 67% of attempts throttled; observed 0 gave up, \d+\.\d s back-off/);
      for (const setting of ["legacy mode and max_attempts=5", "standard mode and max_attempts=3", "standard mode and max_attempts=5", "standard mode and max_attempts=10"]) {
        assert.match(whatIf, new RegExp(`with ${setting.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}, ListBuckets would have had [\\d.<]+ give-ups? and \\d+(\\.\\d)? s (more|less) back-off`), setting);
      }
      assert.match(await page.locator("body").innerText(), /Model: each attempt of an operation is throttled independently/);
    });
  });

  test("boto3 legacy, standard and adaptive runs through sluice: the report names each client's mode from the capture", { skip: needsPython("boto3", "python3-boto3") }, async () => {
    const origin = await startScriptedOrigin(() => Response.make(200, "<ListAllMyBucketsResult/>", { "content-type": "application/xml" }));
    const dir = mkdtempSync(join(tmpdir(), "sluice-modes-"));
    const capture = join(dir, "modes.mitm");
    const sluice = await startSluice({ set: { map_remote: JSON.stringify([`|https://s3\\.eu-west-1\\.amazonaws\\.com|${origin.url}`]), fault_rules: JSON.stringify(["~svc s3 => throttle"]), save_stream_file: capture }, addons: [new Faults(), new Save()] });
    try {
      const python = await pythonWithBoto3();
      const retries: Record<string, string> = { legacy: '{"mode": "legacy", "max_attempts": 2}', standard: '{"mode": "standard", "total_max_attempts": 3}', adaptive: '{"mode": "adaptive", "total_max_attempts": 3}' };
      for (const [mode, config] of Object.entries(retries)) {
        const script = `
import boto3, botocore.config, botocore.exceptions
s3 = boto3.client("s3", region_name="eu-west-1", config=botocore.config.Config(retries=${config}))
try:
    s3.list_buckets()
except botocore.exceptions.ClientError as e:
    print(e)
`;
        const r = await run(python, ["-c", script], { env: awsEnv({ HTTPS_PROXY: sluice.url, AWS_CA_BUNDLE: sluice.caCert }) });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /SlowDown/, mode);
      }
    } finally {
      await Promise.all([sluice.close(), origin.close()]);
    }
    const r = await run(process.execPath, [SLUICE_BIN, "report", capture, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { retryModes: { clients: { client: string; mode: string; maxAttempts: number; calls: number }[] } };
    const modes = report.retryModes.clients.map((c) => [c.mode, c.maxAttempts, c.calls]).sort();
    assert.deepEqual(modes, [["adaptive", 3, 1], ["legacy", 3, 1], ["standard", 3, 1]]);
    const text = await run(process.execPath, [SLUICE_BIN, "report", capture]);
    assert.match(text.stdout, /Retry modes \(per client: address and SDK\)\n.*: (legacy|standard|adaptive), max 3 attempts \(User-Agent \(cfg\/retry-mode\)\)/);
    assert.match(text.stdout, /What if \(model: each attempt of an operation is throttled independently/);
    assert.match(text.stdout, /s3 ListBuckets: 3 calls, 100% of attempts throttled; observed 3 gave up/);
  });
});
