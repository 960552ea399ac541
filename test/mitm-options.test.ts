/**
 * mitmproxy's everyday options — -H, -B, --map-local, --anticache, --anticomp, --showhost,
 * stickycookie, stickyauth — through sluice and through Debian's mitmdump 8.1.1 with the same
 * command line: the same requests must reach the origin and the same answers the client; and
 * --proxyauth and --mode socks5 (plain and TLS inside) side by side with mitmdump.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type http from "node:http";
import { spawnSluice, type RunningSluice } from "./support/cli.js";
import { echo, startOrigin, type Origin, type SeenRequest } from "./support/origins.js";
import { curlVia, header, mitmdumpMissing, startMitmdump, type CurlAnswer, type RunningMitmdump } from "./support/mitmdump.js";
import { parseSpec, pythonReplacement, unescapePython } from "../src/core/spec.js";
import { needs } from "./support/needs.js";

const skip = mitmdumpMissing();

describe("the shared |filter|a|b spec parser", () => {
  test("the first character is the separator; the text splits at most twice, as mitmproxy's", () => {
    assert.deepEqual(pick(parseSpec("/X-Foo/bar", "t")), { filterText: null, subject: "X-Foo", replacement: "bar" });
    assert.deepEqual(pick(parseSpec(":~q:X-Foo:a:b", "t")), { filterText: "~q", subject: "X-Foo", replacement: "a:b" });
    assert.deepEqual(pick(parseSpec("|~d x|a|b|c", "t")), { filterText: "~d x", subject: "a", replacement: "b|c" });
    assert.deepEqual(pick(parseSpec("/X-Foo/", "t")), { filterText: null, subject: "X-Foo", replacement: "" });
    assert.throws(() => parseSpec("/only", "modify_headers"), /modify_headers: "\/only" has one part/);
    assert.throws(() => parseSpec("X-Foo/bar", "modify_headers"), /must start with a separator/);
    assert.throws(() => parseSpec("|~zz|a|b", "map_local"), /map_local: bad filter/);
  });

  test("Python escapes and re.sub templates, as specs written for mitmproxy mean them", () => {
    assert.deepEqual(unescapePython("a\\nb\\x00\\\\c"), Buffer.from("a\nb\x00\\c", "latin1"));
    assert.equal("k=v1;k=v2".replace(/k=(\w+)/g, pythonReplacement("\\1=\\g<0>$")), "v1=k=v1$;v2=k=v2$");
    assert.equal("ab".replace(/(?<x>a)/g, pythonReplacement("[\\g<x>]")), "[a]b");
    assert.throws(() => pythonReplacement("\\q"), /bad escape \\q/);
  });
});

function pick(p: { filterText: string | null; subject: string; replacement: string }) {
  return { filterText: p.filterText, subject: p.subject, replacement: p.replacement };
}

interface Proxy {
  name: string;
  port: number;
  output(): string;
  stop(): Promise<unknown>;
}

describe("mitmproxy's options against mitmdump 8.1.1", { skip: needs("curl", "curl") ?? skip }, () => {
  let origin: Origin;
  let dir: string;
  const proxies: Proxy[] = [];

  before(async () => {
    origin = await startOrigin({
      handler: (req, res, body) => {
        if (req.url === "/login") {
          (res as http.ServerResponse).writeHead(200, { "set-cookie": ["session=abc123; Path=/", "gone=1; Max-Age=0"], "content-type": "text/plain" });
          return void res.end("logged in");
        }
        echo(req, res, body);
      },
    });
    dir = mkdtempSync(join(tmpdir(), "sluice-mitm-opts-"));
    writeFileSync(join(dir, "header-value.txt"), "from-a-file");
    writeFileSync(join(dir, "single.json"), '{"mapped": true}');
    mkdirSync(join(dir, "site", "css"), { recursive: true });
    writeFileSync(join(dir, "site", "index.html"), "<h1>index</h1>");
    writeFileSync(join(dir, "site", "css", "app.css"), "body { color: red }");
    const args = [
      "-H", "/X-Added/one",
      "-H", "|~q|User-Agent|",
      "-H", ":~s:X-Origin:replaced",
      "-H", `|~q|X-From-File|@${join(dir, "header-value.txt")}`,
      "-B", "|~q|hello|bye",
      "-B", '|~s & ~u /echo|"method"|"verb"',
      "--map-local", `|/single$|${join(dir, "single.json")}`,
      "--map-local", `|static\\.example/site|${join(dir, "site")}`,
      "--anticache",
      "--anticomp",
      "--showhost",
      "--set", "stickycookie=~u /sticky|/login",
      "--set", "stickyauth=~u /sticky",
    ];
    const confdir = mkdtempSync(join(tmpdir(), "sluice-mitm-opts-conf-"));
    const [s, m] = await Promise.all([spawnSluice(["dump", "-p", "0", "--confdir", confdir, ...args]), startMitmdump(args)]);
    proxies.push({ name: "sluice", port: (s as RunningSluice).port, output: () => (s as RunningSluice).stdout(), stop: () => s.stop() });
    proxies.push({ name: "mitmdump", port: (m as RunningMitmdump).port, output: () => (m as RunningMitmdump).output(), stop: () => m.stop() });
  });
  after(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    await origin.close();
  });

  /** Runs `request` through each proxy; returns per proxy what the client got and what the origin saw. */
  async function both(request: (port: number) => Promise<CurlAnswer>): Promise<{ name: string; answer: CurlAnswer; seen: SeenRequest | undefined }[]> {
    const out = [];
    for (const p of proxies) {
      const before = origin.requests.length;
      const answer = await request(p.port);
      assert.equal(answer.code, 0, `${p.name}: ${answer.stderr}`);
      out.push({ name: p.name, answer, seen: origin.requests.length > before ? origin.requests.at(-1) : undefined });
    }
    return out;
  }

  test("-H adds, replaces, removes (empty value) and reads @file; -B rewrites bodies; --anticache; --anticomp", async () => {
    const results = await both((port) =>
      curlVia(port, `${origin.url}/echo`, ["-A", "curl-test", "-d", "hello world, hello", "-H", "If-None-Match: \"v1\"", "-H", "If-Modified-Since: Tue, 01 Dec 2026 00:00:00 GMT", "-H", "Accept-Encoding: gzip"]),
    );
    for (const { name, answer, seen } of results) {
      assert.ok(seen, `${name}: the origin was reached`);
      assert.equal(seen.headers["x-added"], "one", name);
      assert.equal(seen.headers["user-agent"], undefined, `${name}: an empty value removes`);
      assert.equal(seen.headers["x-from-file"], "from-a-file", name);
      assert.equal(seen.headers["if-none-match"], undefined, `${name}: anticache`);
      assert.equal(seen.headers["if-modified-since"], undefined, `${name}: anticache`);
      assert.equal(seen.headers["accept-encoding"], "identity", `${name}: anticomp`);
      assert.equal(seen.body.toString(), "bye world, bye", `${name}: -B on the request, every match`);
      assert.equal(seen.headers["content-length"], String("bye world, bye".length), name);
      assert.deepEqual(header(answer, "x-added"), ["one"], `${name}: no filter means responses too`);
      assert.deepEqual(header(answer, "x-origin"), ["replaced"], name);
      assert.equal(header(answer, "x-from-file").length, 0, `${name}: ~q only on requests`);
      assert.match(answer.body, /"verb":"POST"/, `${name}: -B on the response`);
    }
  });

  test("--map-local serves a file, a directory (index.html, content type by extension) and 404 for a missing file", async () => {
    for (const [url, status, type, body] of [
      [`${origin.url}/single`, 200, "application/json", '{"mapped": true}'],
      ["http://static.example/site/css/app.css", 200, "text/css", "body { color: red }"],
      ["http://static.example/site/", 200, "text/html", "<h1>index</h1>"],
      ["http://static.example/site/missing.txt?x=1", 404, null, ""],
      // A path that would leave the directory is not mapped at all: it goes on to the server.
      ["http://static.example/site/../../etc/passwd", 502, null, null],
    ] as const) {
      const results = await both((port) => curlVia(port, url, ["--path-as-is"]));
      for (const { name, answer, seen } of results) {
        assert.equal(seen, undefined, `${name}: ${url} never reaches a server`);
        assert.equal(answer.status, status, `${name}: ${url}`);
        if (type) assert.equal(header(answer, "content-type")[0], type, `${name}: ${url}`);
        if (body !== null) assert.equal(answer.body, body, `${name}: ${url}`);
      }
    }
  });

  test("stickycookie and stickyauth send what the server set and the host was last sent", async () => {
    const results = [];
    for (const p of proxies) {
      await curlVia(p.port, `${origin.url}/login`);
      await curlVia(p.port, `${origin.url}/with-auth`, ["-u", "user:secret"]);
      await curlVia(p.port, `${origin.url}/sticky`);
      results.push({ name: p.name, seen: origin.requests.at(-1)! });
    }
    for (const { name, seen } of results) {
      assert.equal(seen.url, "/sticky");
      assert.equal(seen.headers.cookie, "session=abc123", `${name}: the expired cookie is not sent`);
      assert.equal(seen.headers.authorization, `Basic ${Buffer.from("user:secret").toString("base64")}`, name);
    }
  });

  test("--showhost prints the URL with the Host header's name", async () => {
    await both((port) => curlVia(port, `${origin.url}/shown`, ["-H", "Host: shown.example"]));
    await new Promise((r) => setTimeout(r, 300));
    const urls = proxies.map((p) => /(?:GET) (\S+\/shown)/.exec(p.output())?.[1]);
    // A deliberate difference: for an absolute-form request sluice follows RFC 9112 §3.2.2 and
    // forwards (so records and shows) the URL's host as Host; mitmdump keeps the client's Host.
    const port = new URL(origin.url).port;
    assert.deepEqual(urls, [`http://127.0.0.1:${port}/shown`, "http://shown.example/shown"], proxies.map((p) => p.output()).join("\n---\n"));
    assert.ok(origin.requests.some((r) => r.url === "/shown" && r.headers.host === `127.0.0.1:${port}`), "sluice forwarded the URL's host");
  });
});

describe("--proxyauth and --mode socks5 against mitmdump 8.1.1", { skip: needs("curl", "curl") ?? skip }, () => {
  let plain: Origin;
  let secure: Origin;
  interface Pair {
    name: string;
    port: number;
    caCert: string;
    stop(): Promise<unknown>;
  }
  const auth: Pair[] = [];
  const socks: Pair[] = [];

  before(async () => {
    [plain, secure] = await Promise.all([startOrigin(), startOrigin({ tls: true })]);
    const start = async (args: string[]): Promise<[Pair, Pair]> => {
      const confdir = mkdtempSync(join(tmpdir(), "sluice-mitm-auth-conf-"));
      // Both proxies verify nothing upstream: the test origin's CA is neither's.
      const [s, m] = await Promise.all([spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--ssl-insecure", ...args]), startMitmdump(["--ssl-insecure", ...args])]);
      return [
        { name: "sluice", port: s.port, caCert: join(confdir, "sluice-ca-cert.pem"), stop: () => s.stop() },
        { name: "mitmdump", port: m.port, caCert: m.caCert, stop: () => m.stop() },
      ];
    };
    const [a, b] = await Promise.all([start(["--proxyauth", "alice:s3cret"]), start(["--mode", "socks5"])]);
    auth.push(...a);
    socks.push(...b);
  });
  after(async () => {
    await Promise.all([...auth, ...socks].map((p) => p.stop()));
    await Promise.all([plain.close(), secure.close()]);
  });

  test("--proxyauth user:pass: 407 with a Basic challenge without or with wrong credentials, the origin reached with the right ones and never shown them", async () => {
    for (const p of auth) {
      const before = plain.requests.length;
      const none = await curlVia(p.port, `${plain.url}/auth/none`);
      assert.equal(none.status, 407, `${p.name}: no credentials`);
      assert.match(header(none, "proxy-authenticate")[0] ?? "", /^Basic realm=/, `${p.name}: the challenge`);
      const wrong = await curlVia(p.port, `${plain.url}/auth/wrong`, ["--proxy-user", "alice:nope"]);
      assert.equal(wrong.status, 407, `${p.name}: a wrong password`);
      assert.equal(plain.requests.length, before, `${p.name}: nothing reached the origin`);
      const right = await curlVia(p.port, `${plain.url}/auth/right`, ["--proxy-user", "alice:s3cret"]);
      assert.equal(right.status, 200, `${p.name}: the right credentials`);
      const seen = plain.requests.at(-1)!;
      assert.equal(seen.url, "/auth/right", p.name);
      assert.equal(seen.headers["proxy-authorization"], undefined, `${p.name}: the credentials stay at the proxy`);
      const tunnel = await curlVia(p.port, `${secure.url}/auth/tunnel`, ["--proxy-user", "alice:s3cret", "--cacert", p.caCert]);
      assert.equal(tunnel.status, 200, `${p.name}: HTTPS through an authenticated CONNECT`);
      assert.equal(secure.requests.at(-1)!.headers["proxy-authorization"], undefined, p.name);
    }
  });

  test("--mode socks5: curl --socks5-hostname reaches plain and TLS origins the same way through both", async () => {
    for (const p of socks) {
      const viaSocks = ["-x", `socks5h://127.0.0.1:${p.port}`];
      const http1 = await curlVia(p.port, `${plain.url}/socks/plain?x=1`, viaSocks);
      assert.equal(http1.status, 200, `${p.name}: ${http1.stderr}`);
      assert.equal(plain.requests.at(-1)!.url, "/socks/plain?x=1", p.name);
      const tls = await curlVia(p.port, `${secure.url}/socks/tls`, [...viaSocks, "--cacert", p.caCert]);
      assert.equal(tls.status, 200, `${p.name}: ${tls.stderr}`);
      assert.equal(secure.requests.at(-1)!.url, "/socks/tls", `${p.name}: the TLS inside the tunnel was intercepted and forwarded`);
      assert.equal(JSON.parse(tls.body).method, "GET", p.name);
    }
  });
});
