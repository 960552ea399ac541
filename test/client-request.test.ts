/**
 * The request-target of absolute-form requests (regular and upstream mode): a cached parse of the
 * origin with the path taken as sent must give exactly what WHATWG URL gives for the whole URL.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BadRequestError, absoluteTarget } from "../src/proxy/client-request.js";

function whatwg(url: string) {
  const u = new URL(url);
  const scheme = u.protocol === "https:" ? "https" : "http";
  return { scheme, host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port ? Number(u.port) : scheme === "https" ? 443 : 80, authority: u.host, path: u.pathname + u.search };
}

const URLS = [
  "http://127.0.0.1:8080/",
  "http://127.0.0.1:8080/a/b?c=d&e=f",
  "http://Example.COM/Path?Q=1",
  "http://example.com:80/default-port",
  "https://example.com:443/default-port",
  "https://example.com:8443/x",
  "http://[::1]:8080/v6",
  "http://[0:0:0:0:0:0:0:1]/v6-long",
  "http://example.com/a/./b/../c",
  "http://example.com/a/%2e%2E/c",
  "http://example.com/.well-known/x",
  "http://example.com/a?",
  "http://example.com/q?x='y'",
  "http://example.com/q?x=a/b?c",
  "http://example.com/p%20q/%zz",
  "http://example.com/{brace}|pipe^caret`tick",
  "http://example.com/a\\b",
  "http://user:pass@example.com/userinfo",
  "http://exa%6Dple.com/escaped-host",
  "http://example.com",
  "http://example.com?only-query",
  "http://example.com/frag#ment",
  "https://s3.eu-west-1.amazonaws.com/bucket/key%2Fwith%2Fslashes?X-Amz-Credential=a%2Fb&x-id=GetObject",
];

test("absoluteTarget gives what WHATWG URL gives for the whole URL, cached origin or not", () => {
  for (let round = 0; round < 2; round++) {
    // The second round meets every origin in the cache.
    for (const url of URLS) assert.deepEqual(absoluteTarget(url), whatwg(url), url);
  }
});

test("a malformed absolute URL is a BadRequestError naming it", () => {
  for (const url of ["http://exa mple.com/", "http://[::1/", "http://example.com:99999/"]) {
    assert.throws(() => absoluteTarget(url), (err: Error) => err instanceof BadRequestError && err.message.includes(JSON.stringify(url)), url);
  }
});

test("past the cache's 1,024 origins, every origin is still parsed right (the cache is cleared, not grown)", () => {
  for (let i = 0; i < 3000; i++) {
    const url = `http://h${i}.example:${1000 + (i % 50000)}/p${i}`;
    assert.deepEqual(absoluteTarget(url), whatwg(url));
  }
});
