/**
 * --proxyauth (issue 15), as mitmproxy's: 407 + Proxy-Authenticate in regular and upstream mode
 * (plain requests and CONNECT; a tunnel opened with good credentials stays authenticated), 401 +
 * WWW-Authenticate in reverse mode; the credentials never reach the origin. Real clients: curl
 * (-U / --proxy-user, -u), undici's ProxyAgent. htpasswd files written by Apache's own htpasswd.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startOrigin, type Origin } from "./support/origins.js";
import { startSluice, type TestSluice } from "./support/sluice.js";
import { curlVia, header } from "./support/mitmdump.js";
import { Response } from "../src/core/flow.js";
import type { Addon } from "../src/core/addons.js";

/** Writes `request` on a fresh connection and reads until the proxy closes it. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => s.write(request));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close within 10 s; got ${JSON.stringify(Buffer.concat(chunks).toString("latin1"))}`));
    }, 10_000);
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", reject);
    s.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("latin1"));
    });
  });
}

describe("a CONNECT answered by an addon", () => {
  let sluice: TestSluice;
  before(async () => {
    const answer: Addon = {
      name: "answers-connect",
      httpConnect(flow) {
        flow.response = Response.make(403, "not this tunnel\n", { "content-type": "text/plain", "x-why": "policy" });
      },
    };
    sluice = await startSluice({ addons: [answer] });
  });
  after(() => sluice.close());

  test("gets the whole response: status, headers and body", async () => {
    const r = await curlVia(sluice.port, "https://example.test/", ["-v"]);
    assert.match(r.stderr, /CONNECT tunnel failed, response 403|Received HTTP code 403 from proxy after CONNECT/);
    // curl -v prints the proxy's response head on stderr.
    assert.match(r.stderr, /< x-why: policy/i);
    assert.match(r.stderr, /< content-length: 16/i);
  });

  test("the body follows the head, and the connection closes", async () => {
    const text = await rawExchange(sluice.port, "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n");
    assert.match(text, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(text, /\r\nconnection: close\r\n/i);
    assert.ok(text.endsWith("\r\n\r\nnot this tunnel\n"), JSON.stringify(text));
  });
});
