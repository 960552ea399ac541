/** The filter language on in-memory flows: every operator, precedence, quoting, errors. */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { compileFilter, matchesFilter, FilterSyntaxError, filterHelp, filterHelpText } from "../src/core/filter.js";
import { Headers } from "../src/core/headers.js";
import { HTTPFlow, Request, Response, newClientConnection, newServerConnection } from "../src/core/flow.js";
import { tflow } from "./support/tflow.js";
import { throttleResponse, awsInfoOf } from "../src/aws/index.js";

interface FlowInit {
  method?: string;
  scheme?: "http" | "https";
  host?: string;
  port?: number;
  path?: string;
  reqHeaders?: string[];
  reqBody?: Buffer | string | null;
  status?: number | null;
  resHeaders?: string[];
  resBody?: Buffer | string | null;
}

/** tflow() with this suite's defaults: a finished 200 HTML answer from a known server address. */
function flow(init: FlowInit = {}): HTTPFlow {
  const f = tflow({
    ...init,
    path: init.path ?? "/index.html",
    status: init.status === undefined ? 200 : init.status,
    reason: "OK",
    resHeaders: init.resHeaders ?? ["Content-Type", "text/html; charset=utf-8", "Server", "nginx"],
  });
  f.serverConn.address = ["93.184.216.34", 443];
  return f;
}

const m = (expr: string, f: HTTPFlow) => compileFilter(expr)(f);

describe("flag operators", () => {
  test("~all ~http ~s ~q ~e ~marked ~websocket ~tcp ~udp ~dns", () => {
    const done = flow();
    const pending = flow({ status: null });
    assert.ok(m("~all", done) && m("~http", done));
    assert.ok(m("~s", done) && !m("~s", pending));
    assert.ok(m("~q", pending) && !m("~q", done));
    assert.ok(!m("~e", done));
    done.error = { msg: "connection reset", timestamp: 1 };
    assert.ok(m("~e", done));
    assert.ok(!m("~marked", done));
    done.marked = ":default:";
    assert.ok(m("~marked", done));
    assert.ok(!m("~websocket", done));
    done.websocket = { messages: [], closedByClient: null, closeCode: null, closeReason: null, timestampEnd: null };
    assert.ok(m("~websocket", done));
    for (const op of ["~tcp", "~udp", "~dns"]) assert.ok(!m(op, done), op);
  });

  test("~replay ~replayq ~replays", () => {
    const f = flow();
    assert.ok(!m("~replay", f));
    f.isReplay = "request";
    assert.ok(m("~replay", f) && m("~replayq", f) && !m("~replays", f));
    f.isReplay = "response";
    assert.ok(m("~replay", f) && m("~replays", f) && !m("~replayq", f));
  });

  test("~a matches asset content types of the response only", () => {
    assert.ok(m("~a", flow({ resHeaders: ["Content-Type", "image/png"] })));
    assert.ok(m("~a", flow({ resHeaders: ["content-type", "application/javascript"] })));
    assert.ok(m("~a", flow({ resHeaders: ["Content-Type", "text/css"] })));
    assert.ok(!m("~a", flow({ resHeaders: ["Content-Type", "application/json"] })));
    assert.ok(!m("~a", flow({ status: null, reqHeaders: ["Content-Type", "image/png"] })));
  });
});

describe("regex operators", () => {
  test("~m ~d ~u and a bare word, searched and case-insensitive", () => {
    const f = flow({ method: "PUT", host: "s3.eu-west-1.amazonaws.com", path: "/bucket/Key.TXT?versionId=3" });
    assert.ok(m("~m put", f) && m("~m ^PUT$", f) && !m("~m GET", f));
    assert.ok(m("~d amazonaws", f) && m("~d S3\\.EU", f) && !m("~d example", f));
    assert.ok(m("~u key\\.txt", f) && m("~u versionId=3", f));
    assert.ok(m("bucket/key", f));
    assert.ok(m("~u https://s3", f));
    assert.ok(!m("nothere", f));
  });

  test("~d also matches the Host header's name (pretty host)", () => {
    const f = flow({ host: "127.0.0.1", port: 8000, reqHeaders: ["Host", "api.internal:8000"] });
    assert.ok(m("~d 127.0.0.1", f));
    assert.ok(m("~d api.internal", f));
  });

  test("~h ~hq ~hs search `name: value` lines, multi-line", () => {
    const f = flow({ reqHeaders: ["Host", "example.com", "X-Trace", "abc123"], resHeaders: ["Server", "AmazonS3", "x-amz-request-id", "R1"] });
    assert.ok(m("~h 'x-trace: abc'", f) && m("~hq x-trace", f) && !m("~hs x-trace", f));
    assert.ok(m("~hs '^server: amazons3'", f) && !m("~hq amazons3", f));
    assert.ok(m("~h 'request-id: R1$'", f), "$ matches at each line end");
  });

  test("~t ~tq ~ts match Content-Type", () => {
    const f = flow({ method: "POST", reqHeaders: ["Content-Type", "application/x-amz-json-1.0"], resHeaders: ["Content-Type", "application/xml"] });
    assert.ok(m("~t json", f) && m("~t xml", f));
    assert.ok(m("~tq json", f) && !m("~tq xml", f));
    assert.ok(m("~ts xml", f) && !m("~ts json", f));
  });

  test("~b ~bq ~bs match decoded bodies across lines", () => {
    const gz = zlib.gzipSync(Buffer.from("<Error>\n<Code>SlowDown</Code>\n</Error>"));
    const br = zlib.brotliCompressSync(Buffer.from('{"TableName": "orders"}'));
    const f = flow({
      method: "POST",
      reqHeaders: ["Content-Type", "application/json", "Content-Encoding", "br"],
      reqBody: br,
      resHeaders: ["Content-Type", "application/xml", "Content-Encoding", "gzip"],
      resBody: gz,
    });
    assert.ok(m("~bs slowdown", f) && !m("~bq slowdown", f));
    assert.ok(m("~bq tablename", f) && !m("~bs tablename", f));
    assert.ok(m("~b orders", f) && m("~b SlowDown", f));
    assert.ok(m("~bs 'Error>.<Code'", f), ". matches a newline in bodies");
    assert.ok(!m("~b absent", f));
  });

  test("~b covers WebSocket messages by direction", () => {
    const f = flow();
    f.websocket = {
      messages: [
        { type: 1, fromClient: true, content: Buffer.from("subscribe:prices"), timestamp: 1, dropped: false, injected: false },
        { type: 1, fromClient: false, content: Buffer.from("tick 42"), timestamp: 2, dropped: false, injected: false },
      ],
      closedByClient: null,
      closeCode: null,
      closeReason: null,
      timestampEnd: null,
    };
    assert.ok(m("~bq subscribe", f) && !m("~bs subscribe", f));
    assert.ok(m("~bs tick", f) && !m("~bq tick", f));
  });

  test("~src ~dst ~meta ~marker ~comment", () => {
    const f = flow();
    assert.ok(m("~src 127.0.0.1:50123", f) && m("~dst :443$", f) && !m("~dst 10.0.0.1", f));
    f.metadata = { fault: { rule: "r1", action: "throttle" }, note: "slow" };
    assert.ok(m("~meta throttle", f) && m("~meta '^note: slow$'", f));
    assert.ok(!m("~marker .", f));
    f.marked = ":star:";
    assert.ok(m("~marker star", f));
    f.comment = "seen in incident 42";
    assert.ok(m("~comment incident", f) && !m("~comment outage", f));
  });

  test("~c matches the status code exactly", () => {
    assert.ok(m("~c 503", flow({ status: 503 })));
    assert.ok(!m("~c 50", flow({ status: 503 })));
    assert.ok(!m("~c 200", flow({ status: null })));
  });
});

describe("combinators and precedence", () => {
  const get200 = flow({ method: "GET", status: 200 });
  const put503 = flow({ method: "PUT", status: 503 });
  const get503 = flow({ method: "GET", status: 503 });

  test("! binds tighter than &, & tighter than |", () => {
    // ~m GET | ~m PUT & ~c 200  ==  ~m GET | (~m PUT & ~c 200)
    assert.ok(m("~m GET | ~m PUT & ~c 200", get503));
    assert.ok(!m("~m GET | ~m PUT & ~c 200", put503));
    assert.ok(m("!~c 200 & ~m PUT", put503));
    assert.ok(!m("!~c 200 & ~m PUT", get503));
    assert.ok(m("!(~m GET & ~c 200)", get503) && !m("!(~m GET & ~c 200)", get200));
    assert.ok(m("!!~s", get200));
  });

  test("parentheses group", () => {
    assert.ok(!m("(~m GET | ~m PUT) & ~c 200", put503));
    assert.ok(m("(~m GET | ~m PUT) & ~c 503", put503));
    assert.ok(m("((~m GET))", get200));
  });

  test("side by side means AND, loosest of all (as mitmproxy)", () => {
    assert.ok(m("~m GET ~c 503", get503) && !m("~m GET ~c 503", get200));
    // `~m PUT ~c 200 | ~c 503` is ~m PUT & (~c 200 | ~c 503)
    assert.ok(m("~m PUT ~c 200 | ~c 503", put503));
    assert.ok(!m("~m PUT ~c 200 | ~c 503", get503));
  });

  test("quoting: spaces, operators and escaped quotes inside arguments", () => {
    const f = flow({ reqHeaders: ["X-Note", "it's a (test) | ~ok"] });
    assert.ok(m("~h \"it's a \\(test\\)\"", f));
    assert.ok(m("~h 'it\\'s a'", f));
    assert.ok(m("~hq '\\| ~ok'", f));
    assert.ok(m('~h "x-note: it"', f) && !m('~h "x-note: nope"', f));
  });

  test("an unquoted argument ends at whitespace or parenthesis, but keeps | inside a regex", () => {
    const f = flow({ host: "b.example.org" });
    assert.ok(m("~d a.example|b.example", f));
    assert.ok(m("(~d b.example)", f));
  });

  test("Python regex syntax from mitmproxy docs is accepted", () => {
    const f = flow({ path: "/users/42/orders" });
    assert.ok(m("~u '/users/(?P<id>\\d+)/'", f));
    assert.ok(m("~u '(?i)/USERS/'", f));
    assert.ok(m("~u '/(?P<x>o)rders$'", f));
  });
});

describe("AWS operators", () => {
  function aws(attempt: number, status = 200): HTTPFlow {
    const f = flow({
      method: "PUT",
      host: "s3.eu-west-1.amazonaws.com",
      path: "/my-bucket/logs/2026/11/a.json",
      reqHeaders: [
        "Host", "s3.eu-west-1.amazonaws.com",
        "Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
        "amz-sdk-invocation-id", "6b1f7b9e-1111-2222-3333-444455556666",
        "amz-sdk-request", `attempt=${attempt}; max=5`,
        "User-Agent", "Boto3/1.34.0 md/Botocore#1.34.0 cfg/retry-mode#legacy",
      ],
      status,
    });
    if (status === 503) f.response = throttleResponse(awsInfoOf(f));
    return f;
  }

  test("~svc ~op ~region ~bucket", () => {
    const f = aws(1);
    assert.ok(m("~svc ^s3$", f) && !m("~svc dynamodb", f));
    assert.ok(m("~op PutObject", f) && !m("~op GetObject", f));
    assert.ok(m("~region eu-west-1", f) && !m("~region us-", f));
    assert.ok(m("~bucket my-bucket", f));
    assert.ok(!m("~svc .", flow()), "non-AWS flows have no service");
  });

  test("~attempt N and ~retry", () => {
    assert.ok(m("~attempt 1", aws(1)) && !m("~retry", aws(1)));
    assert.ok(m("~attempt 3", aws(3)) && m("~retry", aws(3)));
    assert.ok(!m("~retry", flow()));
  });

  test("~throttled recognises the service's throttling error", () => {
    assert.ok(m("~throttled", aws(2, 503)));
    assert.ok(!m("~throttled", aws(1, 200)));
    assert.ok(m("~svc s3 & ~throttled & ~retry", aws(2, 503)));
    assert.ok(m("~throttled", flow({ status: 429 })), "a plain 429 is throttling too");
  });
});

describe("errors name the position and what was expected", () => {
  const cases: [string, RegExp, number][] = [
    ["", /empty filter expression/, 0],
    ["   ", /empty filter expression/, 0],
    ["~zz foo", /unknown operator ~zz/, 0],
    ["~s & ~zz", /unknown operator ~zz/, 5],
    ["~c (", /~c expects an integer/, 3],
    ["~c abc", /~c expects an integer/, 3],
    ["~d", /~d expects a regular expression/, 2],
    ["(~s", /unbalanced parenthesis: expected \)/, 3],
    ["~s)", /unbalanced parenthesis: unexpected \)/, 2],
    ["()", /expected an expression inside/, 1],
    ["~s &", /expected an expression/, 4],
    ["| ~s", /expected an expression, found "\|"/, 0],
    ["~u 'abc", /unterminated quoted string/, 3],
    ["~u '(unclosed'", /invalid regular expression "\(unclosed"/, 3],
    ["~ foo", /expected an operator name after ~/, 0],
  ];
  for (const [expr, message, position] of cases) {
    test(JSON.stringify(expr), () => {
      assert.throws(
        () => compileFilter(expr),
        (e: unknown) => {
          assert.ok(e instanceof FilterSyntaxError, String(e));
          assert.match(e.message, message);
          assert.equal(e.position, position, e.message);
          assert.match(e.message, new RegExp(`at position ${position}`));
          assert.equal(e.expression, expr);
          return true;
        },
      );
    });
  }
});

describe("API", () => {
  test("a compiled predicate carries its expression; matchesFilter caches", () => {
    const p = compileFilter("~m GET");
    assert.equal(p.expression, "~m GET");
    const f = flow();
    for (let i = 0; i < 1000; i++) assert.ok(matchesFilter(`~m GET | ~c ${i}`, f));
    assert.ok(!matchesFilter("~m POST", f));
    assert.throws(() => matchesFilter("~c x", f), FilterSyntaxError);
  });

  test("help lists every operator, including the AWS ones", () => {
    const ops = filterHelp().map(([op]) => op.split(" ")[0]);
    for (const op of ["~all", "~a", "~e", "~http", "~websocket", "~marked", "~q", "~s", "~replay", "~replayq", "~replays", "~b", "~bq", "~bs", "~t", "~tq", "~ts", "~h", "~hq", "~hs", "~m", "~d", "~u", "~src", "~dst", "~meta", "~marker", "~comment", "~c", "~svc", "~op", "~region", "~bucket", "~attempt", "~retry", "~throttled"]) {
      assert.ok(ops.includes(op), `${op} documented`);
    }
    assert.match(filterHelpText(), /~svc regex\s+AWS service/);
  });
});
