/**
 * `sluice run -- COMMAND` and `sluice env`: curl, boto3, the AWS CLI, Node's fetch, the AWS SDK for
 * JavaScript and Python requests reach a local origin through the proxy with no set-up of their
 * own — the S3 endpoint they call is mapped to the origin with -M, over TLS intercepted with
 * sluice's CA, which they trust only through the variables sluice run sets.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startOrigin, type Origin } from "./support/origins.js";
import { awsEnv, pythonWithBoto3, run } from "./support/run.js";
import { SLUICE_BIN } from "./support/cli.js";
import { needs, needsPython, pythonWith } from "./support/needs.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const S3 = "https://s3.eu-west-1.amazonaws.com";

describe("sluice run and sluice env", { skip: needs("curl", "curl") }, () => {
  let origin: Origin;
  let confdir: string;
  let dir: string;
  before(async () => {
    origin = await startOrigin();
    confdir = mkdtempSync(join(tmpdir(), "sluice-run-conf-"));
    dir = mkdtempSync(join(tmpdir(), "sluice-run-"));
  });
  after(() => origin.close());

  const mapS3 = () => ["-M", `|https://([a-z0-9.-]+\\.)?s3\\.eu-west-1\\.amazonaws\\.com|${origin.url}`];

  test("curl, boto3, the AWS CLI, Node fetch, @aws-sdk/client-s3 and requests all go through, with no set-up", { skip: needsPython("boto3", "python3-boto3") ?? needsPython("requests", "python3-requests", pythonWith("boto3")) ?? needs("aws", "awscli") }, async () => {
    const python = await pythonWithBoto3();
    const script = join(dir, "clients.sh");
    writeFileSync(script, [
      "set -e",
      `curl -sS -o /dev/null ${S3}/bucket/by-curl`,
      `${python} -c "import boto3; boto3.client('s3', region_name='eu-west-1').get_object(Bucket='bucket', Key='by-boto3')['Body'].read()"`,
      `aws s3api get-object --bucket bucket --key by-awscli ${join(dir, "out")} > /dev/null`,
      `node -e "fetch('${S3}/bucket/by-fetch').then((r) => { if (!r.ok) process.exit(1); return r.text(); })"`,
      `node --input-type=module -e "import { S3Client, GetObjectCommand } from '@aws-sdk/client-s3'; const r = await new S3Client({ region: 'eu-west-1' }).send(new GetObjectCommand({ Bucket: 'bucket', Key: 'by-sdk' })); await r.Body.transformToString();"`,
      `${python} -c "import requests; requests.get('${S3}/bucket/by-requests').raise_for_status()"`,
      "",
    ].join("\n"));
    const r = await run(process.execPath, [SLUICE_BIN, "run", "--confdir", confdir, ...mapS3(), "--", "sh", script], { env: awsEnv(), cwd: REPO, timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    const paths = origin.requests.map((q) => q.url);
    const expected = ["by-curl", "by-boto3", "by-fetch", "by-sdk", "by-awscli", "by-requests"];
    for (const key of expected) assert.ok(paths.some((p) => p.includes(key)), `${key} reached the origin: ${paths.join(" ")}`);
    for (const key of expected) assert.match(r.stderr, new RegExp(`GET ${origin.url.replace(/\./g, "\\.")}/\\S*${key}`), `sluice printed the ${key} flow`);
  });

  test("exits with the command's status; -w saves its flows; an unknown command is exit 127", async () => {
    const file = join(dir, "run.mitm");
    const r = await run(process.execPath, [SLUICE_BIN, "run", "--confdir", confdir, "-q", "-w", file, ...mapS3(), "--", "sh", "-c", `curl -sS -o /dev/null ${S3}/bucket/status; exit 7`], { env: awsEnv(), timeoutMs: 60_000 });
    assert.equal(r.code, 7, r.stderr);
    const saved = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", file, "--confdir", confdir]);
    assert.match(saved.stdout, /\/bucket\/status → 200/);
    const missing = await run(process.execPath, [SLUICE_BIN, "run", "--confdir", confdir, "--", "no-such-program-here"], { env: awsEnv() });
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /cannot run no-such-program-here: command not found/);
    const noCommand = await run(process.execPath, [SLUICE_BIN, "run", "--confdir", confdir]);
    assert.equal(noCommand.code, 2);
    assert.match(noCommand.stderr, /needs a command after --/);
  });

  test("--cut rows go to stderr with the flow lines: the command's stdout stays its own", async () => {
    const r = await run(process.execPath, [SLUICE_BIN, "run", "--confdir", confdir, "--cut", "request.url,response.status_code", "--", "sh", "-c", `curl -sS -o /dev/null ${origin.url}/cut-row && echo command-output`], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "command-output\n");
    assert.match(r.stderr, new RegExp(`^${origin.url}/cut-row,200$`, "m"));
  });

  test("--attach uses a running proxy; sluice env prints the variables for bash, fish and powershell", async () => {
    const env = await run(process.execPath, [SLUICE_BIN, "env", "--confdir", confdir, "--attach", "127.0.0.1:9999"]);
    assert.equal(env.code, 0, env.stderr);
    for (const name of ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "NODE_USE_ENV_PROXY", "NODE_OPTIONS", "GIT_SSL_CAINFO", "CARGO_HTTP_CAINFO", "DENO_CERT", "JAVA_TOOL_OPTIONS"]) {
      assert.match(env.stdout, new RegExp(`^export ${name}=`, "m"), name);
    }
    assert.match(env.stdout, /^export HTTPS_PROXY='http:\/\/127\.0\.0\.1:9999'$/m);
    const bundle = /^export AWS_CA_BUNDLE='([^']+)'$/m.exec(env.stdout)![1]!;
    const pem = readFileSync(bundle, "utf8");
    assert.ok(pem.includes(readFileSync(join(confdir, "sluice-ca-cert.pem"), "utf8").trim()), "the bundle holds sluice's CA");
    assert.ok((pem.match(/BEGIN CERTIFICATE/g) ?? []).length > 50, "and the system's roots");
    // The variables work when evaluated by the shell, against a sluice started separately.
    const evaluated = await run("bash", ["-c", `eval "$(node ${SLUICE_BIN} env --confdir ${confdir} --attach 127.0.0.1:9999)"; echo "$HTTPS_PROXY|$NO_PROXY|$CURL_CA_BUNDLE"`]);
    assert.equal(evaluated.stdout.trim(), `http://127.0.0.1:9999||${bundle}`);
    const fish = await run(process.execPath, [SLUICE_BIN, "env", "--confdir", confdir, "--shell", "fish"]);
    assert.match(fish.stdout, /^set -gx HTTPS_PROXY 'http:\/\/127\.0\.0\.1:8080';$/m);
    const ps = await run(process.execPath, [SLUICE_BIN, "env", "--confdir", confdir, "--shell", "powershell"]);
    assert.match(ps.stdout, /^\$env:HTTPS_PROXY = 'http:\/\/127\.0\.0\.1:8080'$/m);
    const bad = await run(process.execPath, [SLUICE_BIN, "env", "--shell", "tcsh"]);
    assert.match(bad.stderr, /--shell expects bash, fish or powershell/);

    // --attach: a proxy that is already running carries the command's traffic.
    const { spawnSluice } = await import("./support/cli.js");
    const proxy = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, ...mapS3()]);
    try {
      const r = await run(process.execPath, [SLUICE_BIN, "run", "--confdir", confdir, "--attach", `127.0.0.1:${proxy.port}`, "--", "curl", "-sS", "-o", "/dev/null", `${S3}/bucket/attached`], { env: awsEnv() });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(origin.requests.some((q) => q.url.endsWith("/attached")));
    } finally {
      await proxy.stop();
    }
  });
});

void existsSync;
