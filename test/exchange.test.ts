/**
 * One exchange driven without sockets: a fake client and an undici dispatcher the test plays, with
 * the exact order of hooks, upstream calls and client bytes asserted (mitmproxy's playbook style).
 * What real clients see on the wire is in proxy.test.ts and faults.test.ts.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Response } from "../src/core/flow.js";
import { Headers } from "../src/core/headers.js";
import { exchangeHarness, fakeRequest, settle } from "./support/exchange-fakes.js";

/** A response an addon answers with instead of the server's. */
function addonResponse(body: string): Response {
  return new Response({ statusCode: 418, reason: "I'm a teapot", httpVersion: "HTTP/1.1", headers: new Headers(["content-type", "text/plain"]), content: Buffer.from(body) });
}

/** A promise the test resolves when it wants an async hook to finish. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

describe("exchange: the common path", () => {
  test("a kept response: hooks in order, then the client gets the head and body at once", async () => {
    const h = exchangeHarness();
    const x = h.exchange(fakeRequest("GET", "/a?b=1"));
    h.dispatcher.last.start().head(200, ["Content-Length", "5", "X-Up", "1"]).data("hel").data("lo").end();
    await x.done;
    assert.deepEqual(h.log, [
      "hook: requestHeaders",
      "hook: request",
      "upstream: GET /a?b=1",
      "hook: responseHeaders",
      "hook: response",
      "client: head 200",
      "client: body \"hello\"",
      "client: end",
    ]);
    assert.equal(x.flow.response!.content!.toString(), "hello");
    assert.equal(x.flow.response!.headers.get("x-up"), "1");
    assert.deepEqual(x.flow.response!.headers.raw.slice(0, 2), ["Content-Length", "5"], "header names keep their case");
    assert.equal(x.flow.live, false);
  });

  test("a body past stream_large_bodies streams: head and kept bytes first, then each chunk as it comes", async () => {
    const h = exchangeHarness({}, { stream_large_bodies: "4" });
    const x = h.exchange();
    const d = h.dispatcher.last.start().head(200).data("abc").data("defg");
    assert.deepEqual(h.log.slice(-3), ["client: head 200", "client: body \"abc\"", "client: body \"defg\""]);
    d.data("h").end(["X-Sum", "9"]);
    await x.done;
    assert.deepEqual(h.log.slice(-3), ["client: body \"h\"", "client: end", "hook: response"]);
    assert.equal(x.flow.response!.streamed, true);
    assert.equal(x.flow.response!.content, null);
    assert.equal(x.flow.response!.contentLength, 8);
    assert.equal(x.flow.response!.trailers?.get("x-sum"), "9");
  });

  test("an async responseHeaders hook holds upstream paused until it finishes", async () => {
    const hold = gate();
    const h = exchangeHarness({ responseHeaders: () => hold.wait });
    const x = h.exchange();
    h.dispatcher.last.start().head(200);
    assert.equal(h.log.at(-1), "upstream: pause");
    hold.open();
    await settle();
    assert.equal(h.log.at(-1), "upstream: resume");
    h.dispatcher.last.data("ok").end();
    await x.done;
    assert.equal(h.log.at(-2), "client: body \"ok\"");
  });

  test("a slow client pauses a streamed body once 256 KiB queue, and drain resumes it", async () => {
    const h = exchangeHarness({}, { stream_large_bodies: "1" });
    const x = h.exchange();
    const d = h.dispatcher.last.start().head(200).data("ab");
    assert.equal(d.controller.paused, false, "a full write queue below 256 KiB does not pause");
    x.res.writeReturns = false;
    x.res.writableLength = 300 * 1024;
    d.data("c");
    assert.equal(h.log.at(-1), "upstream: pause");
    x.res.emit("drain");
    assert.equal(h.log.at(-1), "upstream: resume");
    x.res.writeReturns = true;
    d.end();
    await x.done;
  });

  test("an upstream failure before the head is a 502 that says what failed, after the error hook", async () => {
    const h = exchangeHarness();
    const x = h.exchange();
    h.dispatcher.last.start().error(Object.assign(new Error("socket hang up"), { code: "UND_ERR_SOCKET" }));
    await x.done;
    assert.deepEqual(h.log.slice(-4), [
      "hook: error (connection to origin.test:80 closed before the response was complete: socket hang up)",
      "client: head 502",
      "client: body \"sluice: connection to origin.test:80 closed before the response was complete: socket hang up\\n\"",
      "client: end",
    ]);
  });

  test("an upstream failure mid-stream cuts the client off: the head is already on the wire", async () => {
    const h = exchangeHarness({}, { stream_large_bodies: "1" });
    const x = h.exchange();
    h.dispatcher.last.start().head(200).data("abc").error(Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" }));
    await x.done;
    assert.deepEqual(h.log.slice(-2), ["client: connection closed by sluice", "hook: error (connection to origin.test:80 closed before the response was complete: other side closed)"]);
  });
});

describe("exchange: addons change the answer", () => {
  test("a request hook that answers means the server is never contacted", async () => {
    const h = exchangeHarness({ request: (f) => void (f.response = addonResponse("from addon")) });
    const x = h.exchange();
    await x.done;
    assert.deepEqual(h.log, ["hook: requestHeaders", "hook: request", "hook: responseHeaders", "hook: response", "client: head 418", "client: body \"from addon\"", "client: end"]);
    assert.equal(h.dispatcher.dispatched.length, 0);
  });

  test("a responseHeaders hook replaces the response, so the server's body is dropped", async () => {
    const h = exchangeHarness({ responseHeaders: (f) => void (f.response = addonResponse("replaced")) });
    const x = h.exchange();
    const d = h.dispatcher.last.start().head(200, ["content-length", "6"]);
    d.data("server").end();
    await x.done;
    assert.deepEqual(h.log.slice(2), [
      "upstream: GET /x",
      "hook: responseHeaders",
      "upstream: abort (response replaced by an addon)",
      "hook: response",
      "client: head 418",
      "client: body \"replaced\"",
      "client: end",
    ]);
    assert.equal(x.res.body, "replaced");
    assert.equal(x.flow.response!.statusCode, 418);
    assert.equal(x.flow.error, null, "a replaced response is not an error");
  });

  test("truncate mid-stream: the client gets the first N bytes, then the connection closes", async () => {
    const h = exchangeHarness({ responseHeaders: (f) => void (f.response!.truncateAt = 5) }, { stream_large_bodies: "2" });
    const x = h.exchange();
    const d = h.dispatcher.last.start().head(200, ["content-length", "9"]);
    d.data("abc").data("defg").data("hi");
    await x.done;
    await settle();
    await settle();
    assert.deepEqual(h.log.slice(3), [
      "hook: responseHeaders",
      "client: head 200",
      "client: body \"abc\"",
      "client: body \"de\"",
      "upstream: abort (response truncated by an addon)",
      "hook: response",
      "client: connection closed by sluice",
    ]);
    assert.equal(x.res.body, "abcde");
    assert.equal(x.flow.error, null, "a truncation fault is not an error");
  });

  test("a kept body is truncated as it is written, the flow keeps all of it", async () => {
    const h = exchangeHarness({ response: (f) => void (f.response!.truncateAt = 3) });
    const x = h.exchange();
    h.dispatcher.last.start().head(200, ["content-length", "6"]).data("abcdef").end();
    await x.done;
    await settle();
    await settle();
    assert.equal(x.res.body, "abc");
    assert.equal(x.res.socket.destroyed, true);
    assert.equal(x.flow.response!.content!.toString(), "abcdef");
  });

  test("pacing holds upstream for the time each chunk takes at the limit; drain does not cut it short", async () => {
    const h = exchangeHarness({ responseHeaders: (f) => void (f.response!.bandwidthLimit = 100) }, { stream_large_bodies: "1" });
    const x = h.exchange();
    const d = h.dispatcher.last.start().head(200).data("0123456789"); // 10 bytes at 100 B/s: 100 ms
    assert.equal(h.log.at(-1), "upstream: pause");
    x.res.emit("drain");
    assert.equal(d.controller.paused, true);
    const t0 = performance.now();
    while (d.controller.paused) await new Promise((r) => setTimeout(r, 5));
    assert.ok(performance.now() - t0 > 60, "paused for about the chunk's time at the limit");
    d.end();
    await x.done;
  });
});

describe("exchange: kill at each phase", () => {
  for (const hook of ["requestHeaders", "request"] as const) {
    test(`killed in ${hook}: nothing goes upstream, the client's connection closes`, async () => {
      const h = exchangeHarness({ [hook]: (f: { kill(): void }) => f.kill() });
      const x = h.exchange();
      await x.done;
      assert.equal(h.dispatcher.dispatched.length, 0);
      assert.deepEqual(h.log.slice(-2), ["client: connection closed by sluice", "hook: error (Connection killed.)"]);
      assert.equal(x.res.headersSent, false);
    });
  }

  test("killed in responseHeaders: upstream aborted, nothing sent to the client", async () => {
    const h = exchangeHarness({ responseHeaders: (f) => f.kill() });
    const x = h.exchange();
    h.dispatcher.last.start().head(200).data("late").end();
    await x.done;
    assert.deepEqual(h.log.slice(3), ["hook: responseHeaders", "upstream: abort (flow killed)", "client: connection closed by sluice", "hook: error (Connection killed.)"]);
    assert.equal(x.res.headersSent, false);
  });

  test("killed in response (kept body): the body is not sent", async () => {
    const h = exchangeHarness({ response: (f) => f.kill("reset") });
    const x = h.exchange();
    h.dispatcher.last.start().head(200).data("body").end();
    await x.done;
    assert.deepEqual(h.log.slice(-3), ["hook: response", "client: connection closed by sluice", "hook: error (Connection killed.)"]);
    assert.equal(x.res.headersSent, false);
  });

  test("killed mid-stream (from the console): upstream aborted at the next chunk, the client cut off", async () => {
    const h = exchangeHarness({}, { stream_large_bodies: "1" });
    const x = h.exchange();
    const d = h.dispatcher.last.start().head(200).data("abc");
    x.flow.kill();
    d.data("def");
    await x.done;
    assert.deepEqual(h.log.slice(-4), ["client: body \"abc\"", "upstream: abort (flow killed)", "client: connection closed by sluice", "hook: error (Connection killed.)"]);
  });

  test("killed while an async request hook ran: checked when it returns", async () => {
    const hold = gate();
    const h = exchangeHarness({ request: () => hold.wait });
    const x = h.exchange();
    await settle();
    x.flow.kill();
    hold.open();
    await x.done;
    assert.equal(h.dispatcher.dispatched.length, 0);
    assert.equal(h.log.at(-1), "hook: error (Connection killed.)");
  });
});

describe("exchange: the client leaves", () => {
  test("client gone while queued (an async request hook): the request is never sent", async () => {
    const hold = gate();
    const h = exchangeHarness({ request: () => hold.wait });
    const x = h.exchange();
    await settle();
    x.res.leave();
    await settle();
    assert.equal(x.flow.clientGone, true);
    hold.open();
    await x.done;
    assert.equal(h.dispatcher.dispatched.length, 0);
    assert.equal(h.log.at(-1), "hook: error (client disconnected before the request was sent)");
  });

  test("client gone while the request waits for an upstream connection: aborted as soon as undici starts it", async () => {
    const h = exchangeHarness();
    const x = h.exchange();
    x.res.leave();
    await x.done;
    assert.equal(h.log.at(-1), "hook: error (client disconnected before the response was complete)");
    h.dispatcher.last.start();
    assert.equal(h.log.at(-1), "upstream: abort (exchange already ended (clientGone))");
  });

  test("client gone mid-stream: upstream aborted, the error hook runs once, later bytes are ignored", async () => {
    const h = exchangeHarness({}, { stream_large_bodies: "1" });
    const x = h.exchange();
    const d = h.dispatcher.last.start().head(200).data("abc");
    x.res.leave();
    await x.done;
    d.data("def");
    assert.deepEqual(h.log.slice(-3), ["client: leaves", "upstream: abort (client disconnected)", "hook: error (client disconnected before the response was complete)"]);
  });
});

test("no source file uses undici's deprecated v1 handler callbacks", () => {
  // Under undici 8 those run only through a wrapper that forces HTTP/1.1 (no HTTP/2 upstream).
  // Looked for in every file that uses undici, as methods or properties of a handler.
  const deprecated = /^\s*(?:async\s+)?(onConnect|onHeaders|onData|onComplete|onError|onUpgrade|onResponseStarted|onBodySent)\s*(?:\(|:)/;
  const offenders: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith(".ts") || p.endsWith(".tsx")) {
        const text = readFileSync(p, "utf8");
        if (!/from "undici"/.test(text)) continue;
        text.split("\n").forEach((line, i) => {
          if (deprecated.test(line)) offenders.push(`${p}:${i + 1}: ${line.trim()}`);
        });
      }
    }
  };
  walk(join(import.meta.dirname, "..", "..", "src"));
  assert.deepEqual(offenders, []);
});
