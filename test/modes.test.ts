/**
 * Proxy modes beyond regular and reverse: socks5 (RFC 1928/1929, as mitmproxy's Socks5Proxy),
 * several --mode listeners in one process (mitmproxy 10+'s syntax), and the mode spec parser.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { startOrigin, type Origin } from "./support/origins.js";
import { run } from "./support/run.js";
import { readFileSync } from "node:fs";
import { Socks5ProxyAgent, fetch } from "undici";
import { spawnSluice } from "./support/cli.js";
import { ProxyAuth } from "../src/addons/proxy-auth.js";
import { tabLines } from "../src/ui/console/flow-details.js";
import { tflow } from "./support/tflow.js";
import { ModeError, listenAddresses, parseMode, parseModes } from "../src/proxy/mode.js";
import { needs, needsPython } from "./support/needs.js";

/** curl with no proxy variables from the environment; exit code, body and stderr. */
async function curl(args: string[]): Promise<{ code: number | null; body: string; stderr: string }> {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(https?|all|no)_proxy$/i.test(k)) delete env[k];
  const r = await run("curl", ["-sS", "--max-time", "20", ...args], { env });
  return { code: r.code, body: r.stdout, stderr: r.stderr };
}

/** Raw SOCKS5 bytes: send `out` in order, collect everything the proxy answers until it closes or `bytes` arrived. */
function socksExchange(port: number, out: Buffer[], bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let got = Buffer.alloc(0);
    let sent = 0;
    s.on("connect", () => s.write(out[sent++]!));
    s.on("data", (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (sent < out.length) s.write(out[sent++]!);
      if (got.length >= bytes) {
        s.destroy();
        resolve(got);
      }
    });
    s.on("close", () => resolve(got));
    s.on("error", reject);
    setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer; got ${got.toString("hex")}`));
    }, 10_000).unref();
  });
}

describe("mode specs (mitmproxy's syntax)", () => {
  test("@PORT and @HOST:PORT, default ports, clashes", () => {
    assert.deepEqual(
      { ...parseMode("reverse:http://127.0.0.1:9000@8081") },
      { spec: "reverse:http://127.0.0.1:9000@8081", kind: "reverse", scheme: "http", host: "127.0.0.1", port: 9000, listenHost: null, listenPort: 8081 },
    );
    assert.equal(parseMode("socks5@127.0.0.1:1090").listenHost, "127.0.0.1");
    assert.equal(parseMode("regular@[::1]:8090").listenHost, "::1");
    assert.equal(parseMode("upstream:https://proxy.example:3129").kind, "upstream");
    assert.throws(() => parseMode("regular@http"), /invalid listen port "http"/);
    assert.throws(() => parseMode("regular@70000"), /invalid listen port "70000"/);
    assert.throws(() => parseMode("socks5:foo"), /socks5 takes no argument/);
    assert.throws(() => parseMode("socks4"), /unknown mode "socks4"/);
    assert.throws(() => parseModes([]), ModeError);

    const plan = (specs: string[], port: number, portSet: boolean) => listenAddresses(parseModes(specs), "127.0.0.1", port, portSet).map((a) => `${a.mode.kind}@${a.host}:${a.port}`);
    // socks5 listens on 1080 as in mitmproxy, unless listen_port is given.
    assert.deepEqual(plan(["regular", "socks5"], 8080, false), ["regular@127.0.0.1:8080", "socks5@127.0.0.1:1080"]);
    assert.deepEqual(plan(["socks5"], 9999, true), ["socks5@127.0.0.1:9999"]);
    assert.deepEqual(plan(["regular", "reverse:http://a@9000"], 8080, false), ["regular@127.0.0.1:8080", "reverse@127.0.0.1:9000"]);
    // Port 0 gives each listener a free port of its own.
    assert.deepEqual(plan(["regular", "socks5"], 0, true), ["regular@127.0.0.1:0", "socks5@127.0.0.1:0"]);
    assert.throws(() => plan(["regular", "reverse:http://a"], 8080, false), /modes "regular" and "reverse:http:\/\/a" would both listen on 127\.0\.0\.1:8080: give one its own port with @PORT/);
  });
});

describe("socks5 mode", () => {
  let plain: Origin;
  let secure: Origin;
  let sluice: TestSluice;
  before(async () => {
    plain = await startOrigin();
    secure = await startOrigin({ tls: true, host: "localhost" });
    sluice = await startSluice({ set: { mode: "socks5" } });
  });
  after(async () => {
    await sluice.close();
    await plain.close();
    await secure.close();
  });

  test("curl --socks5-hostname: plain HTTP and intercepted HTTPS, flows tagged socks5", { skip: needs("curl", "curl") }, async () => {
    const before = sluice.flows.length;
    const http = await curl(["--socks5-hostname", `127.0.0.1:${sluice.port}`, `http://localhost:${plain.port}/plain?x=1`]);
    assert.equal(http.code, 0, http.stderr);
    assert.equal(JSON.parse(http.body).url, "/plain?x=1");
    const https = await curl(["--socks5-hostname", `127.0.0.1:${sluice.port}`, "--cacert", sluice.caCert, `https://localhost:${secure.port}/tls`]);
    assert.equal(https.code, 0, https.stderr);
    assert.equal(JSON.parse(https.body).url, "/tls");
    const flows = await sluice.waitForFlows(before + 2);
    const tls = flows.find((f) => f.request.path === "/tls")!;
    assert.equal(tls.request.scheme, "https");
    assert.equal(tls.request.host, "localhost");
    assert.equal(tls.clientConn.proxyMode, "socks5");
    // Intercepted: the client was served sluice's certificate, which curl checked against sluice's CA.
    assert.equal(tls.clientConn.tls, true);
    assert.equal(tls.serverConn.tls, true);
    assert.equal(flows.find((f) => f.request.path === "/plain?x=1")!.request.scheme, "http");
  });

  test("curl --socks5 (client resolves; IPv4 address type) to HTTP and HTTPS", { skip: needs("curl", "curl") }, async () => {
    const before = sluice.flows.length;
    const http = await curl(["--socks5", `127.0.0.1:${sluice.port}`, `${plain.url}/by-ip`]);
    assert.equal(http.code, 0, http.stderr);
    assert.equal(JSON.parse(http.body).url, "/by-ip");
    const https = await curl(["--socks5", `127.0.0.1:${sluice.port}`, "--cacert", sluice.caCert, `https://localhost:${secure.port}/by-ip-tls`]);
    assert.equal(https.code, 0, https.stderr);
    const flows = await sluice.waitForFlows(before + 2);
    const f = flows.find((x) => x.request.path === "/by-ip-tls")!;
    // The SNI names the host; the SOCKS request carried only the IP.
    assert.equal(f.serverConn.address?.[0], "127.0.0.1");
    assert.equal(f.clientConn.sni, "localhost");
  });

  test("undici's Socks5ProxyAgent (fetch): HTTP and intercepted HTTPS", async () => {
    // requestTls (TLS to the server inside the tunnel) is read by undici 7.30 but missing from its types.
    const options = { requestTls: { ca: readFileSync(sluice.caCert, "utf8") } } as unknown as ConstructorParameters<typeof Socks5ProxyAgent>[1];
    const agent = new Socks5ProxyAgent(`socks5://127.0.0.1:${sluice.port}`, options);
    try {
      const a = await fetch(`http://localhost:${plain.port}/undici-plain`, { dispatcher: agent });
      assert.equal(((await a.json()) as { url: string }).url, "/undici-plain");
      const b = await fetch(`https://localhost:${secure.port}/undici-tls`, { dispatcher: agent });
      assert.equal(((await b.json()) as { url: string }).url, "/undici-tls");
      const flows = await sluice.waitForFlows(sluice.flows.length);
      assert.ok(flows.some((f) => f.request.path === "/undici-tls" && f.clientConn.proxyMode === "socks5" && f.clientConn.tls));
    } finally {
      await agent.close();
    }
  });

  test("Python requests with socks5h:// (PySocks): plain and intercepted HTTPS", { skip: needsPython("requests", "python3-requests", "/usr/bin/python3") ?? needsPython("socks", "python3-socks", "/usr/bin/python3") }, async () => {
    // Debian's python3 with python3-requests and python3-socks (botocore itself has no SOCKS support).
    const script = `
import sys, requests
proxies = {"http": sys.argv[1], "https": sys.argv[1]}
print(requests.get(sys.argv[2], proxies=proxies, timeout=20).json()["url"])
print(requests.get(sys.argv[3], proxies=proxies, verify=sys.argv[4], timeout=20).json()["url"])
`;
    const r = await run("/usr/bin/python3", ["-c", script, `socks5h://127.0.0.1:${sluice.port}`, `http://localhost:${plain.port}/py-plain`, `https://localhost:${secure.port}/py-tls`, sluice.caCert]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["/py-plain", "/py-tls"]);
  });

  test("IPv6 address type: a CONNECT to ::1 is parsed and answered", { skip: needs("curl", "curl") }, async () => {
    // Nothing listens on [::1]:PORT (origins are IPv4), so the request reaches sluice, which
    // tries [::1] and answers 502 naming it: the address was decoded correctly.
    const before = sluice.flows.length;
    const r = await curl(["--socks5", `127.0.0.1:${sluice.port}`, `http://[::1]:${plain.port}/v6`]);
    assert.equal(r.code, 0, r.stderr);
    const flows = await sluice.waitForFlows(before + 1);
    const f = flows.find((x) => x.request.path === "/v6")!;
    assert.equal(f.request.host, "::1");
    assert.equal(f.response?.statusCode ?? 502, 502);
    assert.match(r.body, /::1/);
  });

  test("BIND and UDP ASSOCIATE get 'command not supported' (0x07); an unknown address type 0x08", async () => {
    for (const cmd of [0x02, 0x03]) {
      const got = await socksExchange(sluice.port, [Buffer.from([5, 1, 0]), Buffer.from([5, cmd, 0, 1, 127, 0, 0, 1, 0, 80])], 12);
      assert.equal(got.subarray(0, 2).toString("hex"), "0500", "no-auth method chosen");
      assert.equal(got[3], 0x07, `command 0x${cmd} → ${got.toString("hex")}`);
    }
    const bad = await socksExchange(sluice.port, [Buffer.from([5, 1, 0]), Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80])], 12);
    assert.equal(bad[3], 0x08);
    assert.ok(sluice.logs.some((l) => /SOCKS5 command BIND is not supported/.test(l)));
  });

  test("an HTTP request on the SOCKS5 port gets a 400 saying what the port is", { skip: needs("curl", "curl") }, async () => {
    const r = await curl(["-x", `http://127.0.0.1:${sluice.port}`, `${plain.url}/`]);
    assert.match(r.body, /this port is a SOCKS5 proxy \(mode socks5\)/);
  });
});

describe("socks5 with proxyauth (RFC 1929 username/password)", { skip: needs("curl", "curl") }, () => {
  let origin: Origin;
  let secure: Origin;
  let sluice: TestSluice;
  before(async () => {
    origin = await startOrigin();
    secure = await startOrigin({ tls: true, host: "localhost" });
    sluice = await startSluice({ set: { mode: "socks5", proxyauth: "alice:s3cret" }, addons: [new ProxyAuth()] });
  });
  after(async () => {
    await sluice.close();
    await origin.close();
    await secure.close();
  });

  test("right credentials pass (--proxy-user and socks5h://u:p@), HTTP and HTTPS", async () => {
    const a = await curl(["--socks5-hostname", `127.0.0.1:${sluice.port}`, "--proxy-user", "alice:s3cret", `http://localhost:${origin.port}/auth`]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(JSON.parse(a.body).url, "/auth");
    const agent = new Socks5ProxyAgent(`socks5://alice:s3cret@127.0.0.1:${sluice.port}`);
    try {
      const viaUndici = await fetch(`http://localhost:${origin.port}/auth-undici`, { dispatcher: agent });
      assert.equal(((await viaUndici.json()) as { url: string }).url, "/auth-undici");
    } finally {
      await agent.close();
    }
    const b = await curl(["-x", `socks5h://alice:s3cret@127.0.0.1:${sluice.port}`, "--cacert", sluice.caCert, `https://localhost:${secure.port}/auth-tls`]);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(JSON.parse(b.body).url, "/auth-tls");
  });

  test("a wrong password and no credentials are refused; the origin sees nothing", async () => {
    const seen = origin.requests.length;
    const wrong = await curl(["--socks5-hostname", `127.0.0.1:${sluice.port}`, "--proxy-user", "alice:nope", `http://localhost:${origin.port}/x`]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /authentication failed|User was rejected/i);
    const none = await curl(["--socks5-hostname", `127.0.0.1:${sluice.port}`, `http://localhost:${origin.port}/x`]);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /No authentication method was acceptable|authentication/i);
    assert.equal(origin.requests.length, seen);
    assert.ok(sluice.logs.some((l) => /SOCKS5 authentication failed for user "alice"/.test(l)), sluice.logs.join("\n"));
  });
});

describe("several --mode listeners in one process", { skip: needs("curl", "curl") }, () => {
  test("regular and reverse at once with curl; flows tagged; own listeners refused; a clash is one line", async () => {
    const origin = await startOrigin();
    const backend = await startOrigin();
    const s = await spawnSluice(["dump", "-p", "0", "--mode", "regular", "--mode", `reverse:${backend.url}`, "--mode", "socks5"]);
    try {
      // spawnSluice returns at the first "listening at" line; the others follow it.
      const listening = () => [...s.stderr().matchAll(/sluice (\S+) proxy listening at 127\.0\.0\.1:(\d+)/g)];
      for (let i = 0; i < 200 && listening().length < 3; i++) await new Promise((r) => setTimeout(r, 25));
      const lines = listening();
      assert.deepEqual(lines.map((m) => m[1]), ["regular", `reverse:${backend.url}`, "socks5"]);
      const [regularPort, reversePort, socksPort] = lines.map((m) => Number(m[2]));
      const viaRegular = await curl(["-x", `http://127.0.0.1:${regularPort}`, `${origin.url}/through-regular`]);
      assert.equal(JSON.parse(viaRegular.body).url, "/through-regular");
      const viaReverse = await curl([`http://127.0.0.1:${reversePort}/through-reverse`]);
      assert.equal(JSON.parse(viaReverse.body).url, "/through-reverse");
      assert.equal(backend.requests.length, 1);
      const viaSocks = await curl(["--socks5-hostname", `127.0.0.1:${socksPort}`, `${origin.url}/through-socks`]);
      assert.equal(JSON.parse(viaSocks.body).url, "/through-socks");
      // With several modes, dump starts each line with the mode that accepted the flow.
      const printed = () => s.stdout() + s.stderr();
      for (let i = 0; i < 200 && !/\[socks5\] \S+ GET http:\/\/127\.0\.0\.1:\d+\/through-socks/.test(printed()); i++) await new Promise((r) => setTimeout(r, 25));
      assert.match(printed(), /\[regular\] \S+ GET http:\/\/127\.0\.0\.1:\d+\/through-regular/);
      assert.match(printed(), new RegExp(`\\[reverse:${backend.url.replace(/[.:/]/g, "\\$&")}\\] \\S+ GET \\S+/through-reverse`));
      assert.match(printed(), /\[socks5\] \S+ GET http:\/\/127\.0\.0\.1:\d+\/through-socks/);
      // The regular listener refuses to forward to the reverse listener: it is sluice's own.
      const loop = await curl(["-x", `http://127.0.0.1:${regularPort}`, "-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:${reversePort}/`]);
      assert.equal(loop.body, "508");
      assert.equal(backend.requests.length, 1);
    } finally {
      await s.stop();
      await origin.close();
      await backend.close();
    }
    const clash = await run(process.execPath, [(await import("./support/cli.js")).SLUICE_BIN, "dump", "-p", "18080", "--mode", "regular", "--mode", "socks5@18080"]);
    assert.notEqual(clash.code, 0);
    const errLines = clash.stderr.trim().split("\n");
    assert.equal(errLines.length, 1, clash.stderr);
    assert.match(errLines[0]!, /modes "regular" and "socks5@18080" would both listen on 127\.0\.0\.1:18080/);
  });
});

describe("mode at run time", () => {
  test("changing mode or the listen address after start is refused in one line, the old value kept", async () => {
    const sluice = await startSluice({ set: { mode: "regular" } });
    try {
      assert.throws(() => sluice.master.options.set("mode", "socks5"), /mode is read when the listeners start: restart sluice to change it/);
      assert.deepEqual(sluice.master.options.get("mode"), ["regular"]);
      assert.throws(() => sluice.master.options.set("listen_port", "9"), /listen_port is read when the listeners start/);
    } finally {
      await sluice.close();
    }
  });

  test("addons that send through the proxy (client replay) get the HTTP proxy listener, not a SOCKS5 one listed first", async () => {
    const sluice = await startSluice({ set: { mode: "socks5,regular" } });
    try {
      const [socks, regular] = sluice.master.listening();
      assert.equal(socks!.mode, "socks5");
      assert.equal(sluice.master.context.listener()!.port, regular!.address.port);
    } finally {
      await sluice.close();
    }
  });

  test("the console's Detail tab names the mode that accepted the client", () => {
    const flow = tflow({ url: "http://example.com/" });
    flow.clientConn.proxyMode = "socks5@1090";
    const text = tabLines(flow, "Detail").map((line) => line.map((s) => s.text).join("")).join("\n");
    assert.match(text, /proxy mode\s+socks5@1090/);
  });
});
