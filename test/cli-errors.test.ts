/**
 * Every mistake a user can make on the command line is one line on stderr and a non-zero exit:
 * the real `sluice` executable, spawned per case, never a stack trace, never a quiet exit 0.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./support/run.js";
import { SLUICE_BIN, spawnSluice, freePort, assertOneLineError } from "./support/cli.js";
import { startOrigin, originCaFile, type Origin } from "./support/origins.js";
import { parseMode } from "../src/proxy/mode.js";
import { needs } from "./support/needs.js";

describe("--mode without a scheme, as in mitmproxy", () => {
  test("reverse defaults to https and upstream to http; a path or credentials are refused", () => {
    assert.deepEqual(parseMode("reverse:example.com:8443"), { kind: "reverse", spec: "reverse:example.com:8443", scheme: "https", host: "example.com", port: 8443, listenHost: null, listenPort: null });
    assert.deepEqual(parseMode("reverse:example.com"), { kind: "reverse", spec: "reverse:example.com", scheme: "https", host: "example.com", port: 443, listenHost: null, listenPort: null });
    assert.deepEqual(parseMode("upstream:127.0.0.1:3128"), { kind: "upstream", spec: "upstream:127.0.0.1:3128", scheme: "http", host: "127.0.0.1", port: 3128, listenHost: null, listenPort: null });
    assert.deepEqual(parseMode("reverse:http://127.0.0.1:81/"), { kind: "reverse", spec: "reverse:http://127.0.0.1:81/", scheme: "http", host: "127.0.0.1", port: 81, listenHost: null, listenPort: null }, "a trailing slash is allowed, as in mitmproxy");
    assert.throws(() => parseMode("reverse:https://example.com/api"), /has a path; give only scheme:\/\/host\[:port\]/);
    assert.throws(() => parseMode("upstream:http://u:p@127.0.0.1:3128"), /upstream_auth=USER:PASS/);
  });

  let origin: Origin;
  before(async () => {
    origin = await startOrigin({ tls: true });
  });
  after(() => origin.close());

  test("sluice dump --mode reverse:127.0.0.1:PORT speaks https to the server and says so", { skip: needs("curl", "curl") }, async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-mode-"));
    const proc = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--mode", `reverse:127.0.0.1:${origin.port}`, "--set", `ssl_verify_upstream_trusted_ca=${originCaFile()}`]);
    try {
      assert.match(proc.stderr(), new RegExp(`reverse:127\\.0\\.0\\.1:${origin.port} \\(reverse to https://127\\.0\\.0\\.1:${origin.port}\\) proxy listening`));
      const r = await run("curl", ["-sS", "--max-time", "30", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:${proc.port}/hello`]);
      assert.equal(r.stdout, "200", r.stderr + proc.stderr());
      assert.equal(origin.requests.at(-1)?.url, "/hello");
    } finally {
      await proc.stop();
    }
  });
});

describe("upstream mode with an unreachable upstream proxy", { skip: needs("curl", "curl") }, () => {
  test("the 502 body and the dump line name the upstream proxy, not the origin", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-upstream-"));
    const deadProxy = await freePort();
    const origin = await freePort(); // never contacted: the upstream proxy is the one that is down
    const proc = await spawnSluice(["dump", "-p", "0", "--confdir", confdir, "--mode", `upstream:http://127.0.0.1:${deadProxy}`]);
    try {
      const expected = new RegExp(`could not connect to the upstream proxy 127\\.0\\.0\\.1:${deadProxy}: connection refused .*; the request was for 127\\.0\\.0\\.1:${origin}`);
      const plain = await run("curl", ["-sS", "--max-time", "30", "--noproxy", "", "-x", `http://127.0.0.1:${proc.port}`, "-w", "\n%{http_code}", `http://127.0.0.1:${origin}/x`]);
      assert.match(plain.stdout, /\n502$/);
      assert.match(plain.stdout, expected);
      const tunnelled = await run("curl", ["-sS", "--max-time", "30", "--noproxy", "", "--cacert", join(confdir, "sluice-ca-cert.pem"), "-x", `http://127.0.0.1:${proc.port}`, "-w", "\n%{http_code}", `https://127.0.0.1:${origin}/y`]);
      assert.match(tunnelled.stdout, /\n502$/);
      assert.match(tunnelled.stdout, expected);
      for (let i = 0; i < 100 && proc.stdout().split("\n").filter(Boolean).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
      const lines = proc.stdout().trim().split("\n");
      assert.equal(lines.length, 2, proc.stdout());
      for (const line of lines) assert.match(line, expected);
    } finally {
      await proc.stop();
    }
  });
});

/** One mistake: the command line, what its one error line must say, and the exit code when it matters. */
interface BadInput {
  args: string[];
  says: RegExp;
  code?: number;
}

describe("every bad input is one line on stderr and a non-zero exit", () => {
  // HOME is a fresh folder, so the default confdir (~/.sluice) and its config file are the test's.
  const home = mkdtempSync(join(tmpdir(), "sluice-home-"));
  const dir = mkdtempSync(join(tmpdir(), "sluice-bad-input-"));
  const aFile = join(dir, "a-file");
  const corrupt = join(dir, "corrupt.mitm");
  const missing = join(dir, "missing.mitm");
  const emptyCapture = join(dir, "empty-capture.mitm");
  const folder = join(dir, "folder");
  const badYamlConf = join(dir, "bad-yaml-conf");
  const unknownOptionConf = join(dir, "unknown-option-conf");
  const badValueConf = join(dir, "bad-value-conf");
  let closedPort = 0;
  before(async () => {
    // A second run, as most are: the CA exists, so no "created a new CA" line comes before the error.
    const ca = await run(process.execPath, [SLUICE_BIN, "ca"], { env: { ...process.env, HOME: home } });
    assert.equal(ca.code, 0, ca.stderr);
    writeFileSync(aFile, "just a file\n");
    closedPort = await freePort();
    writeFileSync(corrupt, "garbage, not a flow file\n");
    writeFileSync(emptyCapture, "");
    mkdirSync(folder);
    writeFileSync(join(folder, "inside.mitm"), "");
    symlinkSync(folder, join(dir, "folder-link"));
    writeFileSync(join(dir, "addon.py"), "def response(flow): pass\n");
    writeFileSync(join(dir, "broken.ts"), "export default { request(flow) { let x: number = ; } };\n");
    writeFileSync(join(dir, "misspelt.js"), "export default { respons(flow) { flow.response.status_code = 429; } };\n");
    writeFileSync(join(dir, "throws.js"), "const x = 1;\nthrow new Error('boom at load');\nexport default {};\n");
    mkdirSync(badYamlConf);
    writeFileSync(join(badYamlConf, "config.yaml"), "listen_port: [8080\n");
    mkdirSync(unknownOptionConf);
    writeFileSync(join(unknownOptionConf, "config.yaml"), "listen_prot: 8080\n");
    mkdirSync(badValueConf);
    writeFileSync(join(badValueConf, "config.yaml"), "connect_timeout: 0.5\n");
  });

  const p0 = ["-p", "0"];
  const cases = (): BadInput[] => [
    // The confdir, ports and addresses
    { args: ["dump", ...p0, "--confdir", join(aFile, "conf")], says: /cannot keep the CA in .*a-file\/conf: ENOTDIR.*; choose a folder you can write with --confdir DIR/ },
    { args: ["ca", "--confdir", join(aFile, "conf")], says: /cannot keep the CA in .*a-file\/conf: ENOTDIR/ },
    // Node's recursive mkdir never returns under /proc: this hung before.
    { args: ["dump", ...p0, "--confdir", "/proc/sluice-no-such/conf"], says: /cannot keep the CA in \/proc\/sluice-no-such\/conf: ENOENT.*; choose a folder you can write with --confdir DIR/ },
    { args: ["dump", "--listen-port", "70000"], says: /option listen_port expects a whole number from 0 to 65535, got "70000"/ },
    { args: ["dump", "-p", "-1"], says: /option listen_port expects a whole number from 0 to 65535, got "-1"/ },
    { args: ["dump", "-p", "abc"], says: /option listen_port expects a whole number, got "abc"/ },
    { args: ["dump", ...p0, "--set", "admin_port=70000"], says: /admin_port expects a port from 0 to 65535/ },
    { args: ["dump", ...p0, "--set", "metrics_port=99999"], says: /metrics_port must be a port from 0 to 65535/ },
    { args: ["web", ...p0, "--set", "web_port=70000"], says: /web_port expects a port from 0 to 65535/ },
    { args: ["dump", ...p0, "--set", "backlog=0"], says: /backlog expects a whole number of at least 1/ },
    { args: ["dump", ...p0, "--set", "statsd=127.0.0.1:99999"], says: /statsd expects HOST:PORT/ },
    { args: ["web", ...p0, "--set", "web_host=192.0.2.1"], says: /web UI not started: 192\.0\.2\.1 is not an address of this machine \(EADDRNOTAVAIL\); use --set web_host=127\.0\.0\.1/, code: 1 },
    { args: ["dump", ...p0, "--listen-host", "192.0.2.1"], says: /cannot listen on 192\.0\.2\.1:0: 192\.0\.2\.1 is not an address of this machine .*--listen-host 127\.0\.0\.1/ },
    // Files given to flags that read one
    { args: ["dump", "-n", "-r", folder], says: /folder: is a directory; give a mitmproxy flow file/, code: 1 },
    { args: ["dump", "-r", missing], says: /missing\.mitm: cannot open for reading: ENOENT, no such file; give a mitmproxy flow file/, code: 1 },
    { args: ["dump", "-n", "-r", corrupt], says: /corrupt\.mitm: not a flow file/, code: 1 },
    { args: ["dump", ...p0, "-C", missing], says: /client_replay: .*missing\.mitm: cannot open for reading: ENOENT/ },
    { args: ["dump", ...p0, "-C", corrupt], says: /client_replay: .*corrupt\.mitm: not a flow file/ },
    { args: ["dump", ...p0, "-C", folder], says: /client_replay: .*folder: is a directory/ },
    { args: ["dump", ...p0, "-S", missing], says: /server_replay: .*missing\.mitm: cannot open for reading: ENOENT/ },
    { args: ["dump", ...p0, "-S", corrupt], says: /server_replay: .*corrupt\.mitm: not a flow file/ },
    { args: ["dump", ...p0, "-s", join(dir, "missing.js")], says: /script .*missing\.js does not exist/ },
    { args: ["dump", ...p0, "-s", corrupt], says: /sluice loads JavaScript and TypeScript files/ },
    { args: ["dump", ...p0, "-s", join(dir, "addon.py")], says: /not Python/ },
    { args: ["dump", ...p0, "-s", join(dir, "broken.ts")], says: /failed to load: .*broken\.ts:1:\d+: ERROR: Unexpected/ },
    { args: ["dump", ...p0, "-s", join(dir, "throws.js")], says: /failed to load: Error: boom at load \(.*throws\.js:2:7\)/ },
    // Only a misspelt hook: "exports no addon" would hide why.
    { args: ["dump", ...p0, "-s", join(dir, "misspelt.js")], says: /it exports no hook sluice calls: respons\(\) is not a hook \(did you mean response\(\)\?\)/ },
    { args: ["dump", ...p0, "--faults", join(dir, "missing.yaml")], says: /--faults .*missing\.yaml: cannot read it \(ENOENT, no such file\)/ },
    { args: ["dump", ...p0, "--faults", folder], says: /--faults .*folder: cannot read it \(EISDIR, it is a directory\)/ },
    { args: ["dump", ...p0, "--shapes", join(dir, "missing.yaml")], says: /--shapes .*missing\.yaml: cannot read it \(ENOENT, no such file\)/ },
    { args: ["dump", ...p0, "--certs", join(dir, "missing.pem")], says: /certs: cannot read .*missing\.pem/ },
    { args: ["dump", ...p0, "--map-local", `|~q|/x|${join(dir, "missing")}`], says: /map_local: .*missing.* does not exist/ },
    { args: ["dump", ...p0, "--set", `client_certs=${join(dir, "missing.pem")}`], says: /client_certs: cannot read .*missing\.pem \(ENOENT\)/ },
    { args: ["dump", ...p0, "-H", `|~q|x-a|@${join(dir, "missing.txt")}`], says: /modify_headers: cannot read .*missing\.txt/ },
    { args: ["dump", ...p0, "--set", `ssl_verify_upstream_trusted_ca=${join(dir, "missing.pem")}`], says: /ssl_verify_upstream_trusted_ca: cannot read .*missing\.pem/ },
    { args: ["dump", ...p0, "--proxyauth", `@${join(dir, "missing.htpasswd")}`], says: /proxyauth: cannot read htpasswd file .*missing\.htpasswd: no such file/ },
    { args: ["dump", ...p0, "--proxyauth", `@${corrupt}`], says: /proxyauth: .*corrupt\.mitm line 1: expected user:hash/ },
    { args: ["dump", ...p0, "--mode", "socks5@70000"], says: /invalid listen port "70000" after @/ },
    // A mode's own @PORT wins: -p (or --listen-host) used by no listener was ignored unseen.
    { args: ["dump", "-p", "18999", "--mode", "regular@0", "--mode", "socks5@0"], says: /^sluice: -p 18999 is used by no listener: every --mode has its own @PORT \(regular@0, socks5@0\); drop -p/ },
    { args: ["dump", "--listen-host", "127.0.0.1", "--mode", "regular@127.0.0.1:0"], says: /^sluice: --listen-host 127\.0\.0\.1 is used by no listener: every --mode has its own @HOST:PORT/ },
    { args: ["dump", ...p0, "--confdir", badYamlConf], says: /config file .*config\.yaml is not valid YAML/ },
    { args: ["dump", ...p0, "--confdir", unknownOptionConf], says: /unknown option listen_prot/ },
    { args: ["dump", ...p0, "--confdir", badValueConf], says: /^sluice: config file .*bad-value-conf\/config\.yaml: option connect_timeout expects a whole number, got "0\.5"/ },
    // Files to write
    { args: ["dump", ...p0, "--set", `hardump=${join(dir, "no-such-dir", "x.har")}`], says: /hardump: cannot write .*x\.har: the directory .*no-such-dir does not exist/ },
    { args: ["dump", ...p0, "-w", join(aFile, "x.mitm")], says: /cannot write flows to .*a-file\/x\.mitm/ },
    { args: ["dump", ...p0, "-w", "-"], says: /save_stream_file: -w - would write a file named "-", not standard output .*; give a file name, or \.\/- if that file is what you mean/ },
    { args: ["dump", ...p0, "-w", folder], says: /cannot write flows to .*folder.*EISDIR/ },
    { args: ["dump", ...p0, "-w", join(dir, "no-such-dir", "x.mitm")], says: /cannot write flows to .*no-such-dir\/x\.mitm: the folder .*no-such-dir does not exist \(ENOENT\); create it or choose another path/ },
    { args: ["dump", ...p0, "-w", join(dir, "no-such-dir", "x.har")], says: /cannot write flows to .*no-such-dir\/x\.har: the folder .*no-such-dir does not exist \(ENOENT\); create it/ },
    { args: ["dump", ...p0, "-w", join(dir, "no-such-dir", "x.sqlite")], says: /cannot write flows to .*no-such-dir\/x\.sqlite: the folder .*no-such-dir does not exist \(ENOENT\); create it/ },
    { args: ["dump", ...p0, "-w", "/proc/sluice-capture.mitm"], says: /cannot write flows to \/proc\/sluice-capture\.mitm: nothing can be created in \/proc \(ENOENT\); choose another path/ },
    { args: ["dump", ...p0, "--allow-hosts", "a\\.example", "--ignore-hosts", "b\\.example"], says: /ignore_hosts and allow_hosts cannot both be set: use --allow-hosts .* or --ignore-hosts/ },
    { args: ["dump", ...p0, "--set", `ssl_verify_upstream_trusted_ca=${aFile}`], says: /ssl_verify_upstream_trusted_ca: .*a-file holds no PEM certificate .*; give a PEM file of the CA certificates to trust/ },
    { args: ["dump", ...p0, "--set", "ssl_verify_upstream_trusted_ca=" + missing], says: /ssl_verify_upstream_trusted_ca: cannot read .*missing\.mitm: ENOENT.*; give a PEM file of the CA certificates to trust/ },
    // Modes
    { args: ["dump", ...p0, "--mode", "reverse:https://example.com/api"], says: /mode reverse: "https:\/\/example\.com\/api" has a path/ },
    { args: ["dump", ...p0, "--mode", "upstream:ftp://127.0.0.1:21"], says: /scheme ftp is not supported/ },
    { args: ["dump", ...p0, "--mode", "reverse:"], says: /mode reverse needs a URL/ },
    // Numbers, sizes, durations, rates, choices
    { args: ["dump", ...p0, "--set", "body_size_limit=12q"], says: /body_size_limit expects a size such as 512k/ },
    { args: ["dump", ...p0, "--set", "stream_large_bodies=abc"], says: /stream_large_bodies expects a size/ },
    { args: ["dump", ...p0, "--set", "connect_timeout=-5"], says: /connect_timeout expects a whole number of at least 0, got "-5"/ },
    { args: ["dump", ...p0, "--set", "intercept_timeout=0"], says: /intercept_timeout expects a whole number of at least 1/ },
    // 0 (or -1) read as "no limit" would keep every flow; it was quietly taken as 1.
    { args: ["dump", ...p0, "--set", "view_max_flows=0"], says: /option view_max_flows expects a whole number of at least 1, got "0"/ },
    { args: ["web", ...p0, "--set", "view_max_flows=-1"], says: /option view_max_flows expects a whole number of at least 1, got "-1"/ },
    { args: ["dump", ...p0, "--flow-detail", "9"], says: /flow_detail must be 0 to 4/ },
    { args: ["dump", ...p0, "--set", "termlog_verbosity=loud"], says: /termlog_verbosity expects one of error, warn, info/ },
    { args: ["dump", ...p0, "--cut", "nosuchfield"], says: /cut "nosuchfield": a flow has no nosuchfield/ },
    { args: ["dump", ...p0, "--cut", "requests.method"], says: /a flow has no requests \(did you mean request\?\)/ },
    { args: ["dump", ...p0, "--cut", "request.url", "--cut-format", "xml"], says: /cut_format expects one of csv, json/ },
    // Flags that cancel each other: one was quietly dropped.
    { args: ["dump", ...p0, "-q", "-v"], says: /-q \(only errors\) and -v \(debug logging\) contradict each other: give one/ },
    { args: ["dump", ...p0, "-q", "--flow-detail", "3"], says: /-q prints no flows, so --flow-detail 3 would do nothing: give one/ },
    { args: ["dump", ...p0, "--cut", "request.url", "--set", "flow_detail=2"], says: /--cut prints its fields in place of flow lines, so --set flow_detail=2 would do nothing: give one/ },
    { args: ["dump", ...p0, "-q", "--set", "termlog_verbosity=debug"], says: /^sluice: -q \(only errors\) and --set termlog_verbosity=debug contradict each other: give one/ },
    { args: ["dump", ...p0, "-v", "--set", "termlog_verbosity=warn"], says: /^sluice: -v \(debug logging\) and --set termlog_verbosity=warn contradict each other/ },
    { args: ["dump", ...p0, "--set", "dumper_filter=~s", "~q"], says: /^sluice: the FILTER argument "~q" and --set dumper_filter=~s both choose the flows shown, and one would be dropped: give one/ },
    { args: ["web", ...p0, "--set", "view_filter=~s", "~q"], says: /^sluice: the FILTER argument "~q" and --set view_filter=~s both choose the flows shown/ },
    { args: ["dump", ...p0, "--cut-format", "json"], says: /--cut-format formats the rows of --cut FIELDS, which is not given: add --cut/ },
    { args: ["dump", ...p0, "--fault", "~q => delay 10x"], says: /bad duration "10x"/ },
    { args: ["dump", ...p0, "--fault", "~q => throttle p=2"], says: /p= expects a probability/ },
    // from= defaults to when the rule is loaded: a window ending then never opens.
    { args: ["dump", ...p0, "--fault", "~q => throttle until=0s"], says: /fault rule "~q => throttle until=0s": the window ends \(0ms\) before it starts \(0ms\)/ },
    { args: ["dump", ...p0, "--shape", "~q => 10/ms"], says: /bad rate "10\/ms"/ },
    // Unknown names and bad filters
    { args: ["dump", "--no-such-flag"], says: /unknown option --no-such-flag/ },
    { args: ["dump", "-w"], says: /option -w, --save-stream-file <value> needs a value/ },
    { args: ["dump", ...p0, "-w", "-x.mitm"], says: /option -w is followed by something that looks like another option; .* write --save-stream-file=VALUE/ },
    { args: ["dump", ...p0, "--set", "nonexistent=1"], says: /unknown option nonexistent/ },
    // As in mitmproxy, --set NAME alone sets a true/false option to true; other options need their value.
    { args: ["dump", ...p0, "--set", "connect_timeout"], says: /option connect_timeout needs a value: --set connect_timeout=VALUE \(only true\/false options/ },
    { args: ["dump", ...p0, "--set", "confdir"], says: /option confdir needs a value: --set confdir=DIR/ },
    // An empty value (an unset shell variable) meant "none": no capture, no authentication, the CA in the working directory.
    { args: ["dump", ...p0, "-w", ""], says: /^sluice: -w was given an empty value \(an unset shell variable\?\); give it a value, or leave -w out/ },
    { args: ["dump", ...p0, "--proxyauth", ""], says: /^sluice: --proxyauth was given an empty value/ },
    { args: ["dump", ...p0, "--confdir="], says: /^sluice: --confdir was given an empty value/ },
    { args: ["dump", ...p0, "--set", "confdir="], says: /option confdir needs a value: --set confdir=DIR/ },
    { args: ["ca", "--confdir", ""], says: /^sluice: --confdir was given an empty value/ },
    { args: ["run", "--attach", "", "--", "true"], says: /^sluice: --attach was given an empty value \(an unset shell variable\?\); give it a value, or leave --attach out/ },
    { args: ["env", "--attach="], says: /^sluice: --attach was given an empty value/ },
    { args: ["env", "--confdir", " "], says: /^sluice: --confdir was given an empty value/ },
    { args: ["dump", ...p0, "--set", "=1"], says: /--set expects name=value, got "=1"/ },
    { args: ["dump", ...p0, "~s & ~zz"], says: /unknown operator ~zz at position 5/ },
    { args: ["dump", ...p0, "--intercept", "~c ("], says: /~c expects an integer/ },
    { args: ["dump", ...p0, "--set", "view_filter=~u ("], says: /filter/ },
    { args: ["dump", ...p0, "--ignore-hosts", "("], says: /ignore_hosts: "\(" is not a valid regular expression/ },
    { args: ["dump", ...p0, "-M", "|~q|(|x"], says: /map_remote: "\(" is not a valid regular expression/ },
    { args: ["frobnicate"], says: /unknown command "frobnicate"/ },
    // The other commands
    { args: ["report"], says: /report needs a capture file/ },
    { args: ["report", missing], says: /missing\.mitm/ },
    { args: ["report", folder], says: /folder/ },
    { args: ["report", corrupt], says: /not a flow file/ },
    { args: ["report", corrupt, "--bogus"], says: /unknown option --bogus/ },
    // An empty capture is a valid one: the page would have replaced it.
    { args: ["report", emptyCapture, "--html", join(dir, ".", "empty-capture.mitm")], says: /--html .*empty-capture\.mitm names the capture .*empty-capture\.mitm: the page would replace it; write the page to another file/ },
    { args: ["report", emptyCapture, "--html", ""], says: /^sluice: --html was given an empty value \(an unset shell variable\?\); give it a value, or leave --html out/ },
    { args: ["report", emptyCapture, "--html", join(dir, "a.html"), "--html", join(dir, "b.html")], says: /^sluice: --html is given twice \(--html .*a\.html and --html .*b\.html\) and takes one value: give it once/ },
    { args: ["report", corrupt, "--html", folder], says: /cannot write the HTML report to .*folder: it is a directory; give a file name, e\.g\. .*folder\/report\.html/ },
    // Without -r the capture's name was a filter on live traffic, and nothing from it was printed.
    { args: ["dump", ...p0, emptyCapture], says: /^sluice: .*empty-capture\.mitm is a capture file, but here it is a FILTER \(flows whose URL contains that text\), not a file to read; to read it, give -r .*empty-capture\.mitm; to filter on that text, write ~u / },
    { args: ["web", ...p0, "~s", "&", emptyCapture], says: /empty-capture\.mitm is a capture file, but here it is a FILTER/ },
    // Loaded flows go through no proxy: these were quietly not applied to them.
    { args: ["dump", "-n", "-r", emptyCapture, "--fault", "~q => throttle", "-H", "|~q|x-a|1"], says: /^sluice: -n prints the flows of -r FILE as they were recorded, with no proxy: -H, --fault act on live traffic and would do nothing here; drop them, or leave out -n/ },
    { args: ["dump", "-n", "-r", emptyCapture, "-p", "8080"], says: /-p acts on live traffic and would do nothing here; drop it, or leave out -n/ },
    { args: ["dump", ...p0, "-S", emptyCapture, "-w", join(dir, ".", "empty-capture.mitm")], says: /^sluice: -S and -w name the same file .*empty-capture\.mitm: -w would empty the recording being replayed; write to another file, or append with -w \+/ },
    { args: ["dump", ...p0, "-C", emptyCapture, "-w", emptyCapture], says: /^sluice: -C and -w name the same file .*empty-capture\.mitm/ },
    { args: ["dump", "-n", "-r", corrupt, "-r", missing], says: /-r reads one file, got 2 \(.*corrupt\.mitm, .*missing\.mitm\); give one/ },
    { args: ["report", corrupt, "--infer-window", "-5"], says: /option --infer-window is followed by something that looks like another option; .* write --infer-window=VALUE/ },
    { args: ["report", corrupt, "--html"], says: /^sluice: option --html <value> needs a value: see `sluice report --help`/ },
    { args: ["report", corrupt, "~zz"], says: /unknown operator ~zz/ },
    { args: ["convert", missing, join(dir, "out.har")], says: /missing\.mitm: cannot open for reading: ENOENT, no such file/ },
    { args: ["convert", folder, join(dir, "out.har")], says: /folder: is a directory/ },
    { args: ["convert", corrupt, join(dir, "out.har")], says: /not a flow file/ },
    { args: ["convert", corrupt], says: /convert needs IN and OUT/ },
    // The same file through a symlinked folder: the output would have replaced the input.
    { args: ["convert", join(folder, "inside.mitm"), join(dir, "folder-link", "inside.mitm")], says: /cannot convert .*inside\.mitm onto itself; choose a different output file/ },
    { args: ["convert", corrupt, join(dir, "out.har"), "--bogus"], says: /unknown option --bogus for `sluice convert`: it takes IN OUT \[FILTER\]/ },
    { args: ["convert", corrupt, join(dir, "out.har"), "~zz"], says: /unknown operator ~zz/ },
    // convert writes by OUT's extension: another one would be a mitmproxy file under a misleading name.
    { args: ["convert", corrupt, join(dir, "out.xyz")], says: /cannot tell which format to write .*out\.xyz in: name it .*\.har.*\.mitm/ },
    { args: ["convert", corrupt, join(dir, "out")], says: /cannot tell which format to write .*out in/ },
    // The error names OUT, not the temporary OUT.partial sluice writes first.
    { args: ["convert", corrupt, join(dir, "no-such-dir", "x.har")], says: /^sluice: .*no-such-dir\/x\.har: the folder .*no-such-dir does not exist \(ENOENT\); create it or choose another path/ },
    { args: ["convert", corrupt, join(dir, "no-such-dir", "x.sqlite")], says: /^sluice: .*no-such-dir\/x\.sqlite: the folder .*no-such-dir does not exist \(ENOENT\)/ },
    { args: ["run"], says: /sluice run needs a command after --/ },
    { args: ["run", ...p0, "--", join(dir, "no-such-program")], says: /cannot run .*no-such-program: no such file/, code: 127 },
    { args: ["run", ...p0, "--", "no-such-program-sluice-test"], says: /cannot run no-such-program-sluice-test: command not found/, code: 127 },
    { args: ["run", "--bogus", "--", "true"], says: /unknown option --bogus/ },
    { args: ["run", "-r", corrupt, "--", "true"], says: /-n and -r do not apply to sluice run/ },
    { args: ["env", "--bogus"], says: /unknown argument --bogus for `sluice env`/ },
    { args: ["env", "--attach", "127.0.0.1:99999"], says: /--attach expects a port from 1 to 65535, got 99999/ },
    // The command would see only refused connections naming no one.
    { args: ["run", "--attach", `127.0.0.1:${closedPort}`, "--", "true"], says: new RegExp(`--attach 127\\.0\\.0\\.1:${closedPort}: nothing answers there \\(ECONNREFUSED\\); start sluice there first`) },
    // With --attach the running sluice does the work: -w, --fault or a filter here were ignored unseen.
    { args: ["run", "--attach", `127.0.0.1:${closedPort}`, "-w", join(dir, "never.mitm"), "--fault", "~q => throttle", "~d s3", "--", "true"], says: /--attach uses the sluice already running at 127\.0\.0\.1:\d+, so -w, --fault, the filter "~d s3" would do nothing here; give them to that sluice, or drop --attach/ },
    { args: ["run", "--set", "hardump=-", "--", "true"], says: /^sluice: --set hardump=- would print the HAR on the command's stdout: sluice run keeps stdout for the command; give hardump a file/ },
    { args: ["env", "--shell", "tcsh"], says: /--shell expects bash, fish or powershell/ },
    { args: ["limits", "nosuchservice"], says: /no limit profile for "nosuchservice"/ },
    { args: ["limits", "scale=abc"], says: /scale= expects a factor above 0/ },
    { args: ["limits", "s3", "partitions=5"], says: /^sluice: limits: partitions= applies to dynamodb, not s3, so it would change nothing here; drop it, or ask for that service/ },
    { args: ["limits", "dynamodb", "depth=2", "reserved=f:2"], says: /limits: depth= applies to s3, reserved= applies to lambda, not dynamodb/ },
    { args: ["web", ...p0, "-r", missing], says: /missing\.mitm: cannot open for reading: ENOENT/, code: 1 },
    { args: ["web", ...p0, "-n", "-r", corrupt], says: /-n does not apply to the web UI/ },
    { args: ["console", ...p0], says: /the console needs a terminal/ },
    // Dump's output options were dropped unseen by the other front ends (--cut would draw over the console).
    { args: ["web", ...p0, "--flow-detail", "3"], says: /^sluice: --flow-detail sets what sluice dump prints per flow; the web UI shows every flow in full, so it would do nothing: drop it, or use sluice dump/ },
    { args: ["console", ...p0, "--flow-detail", "2"], says: /--flow-detail sets what sluice dump prints per flow; the console shows every flow in full/ },
    { args: ["console", ...p0, "--cut", "request.url"], says: /--cut prints rows on the terminal the console draws on; use `sluice dump --cut FIELDS`/ },
    { args: ["ca", "--bogus"], says: /unknown argument --bogus for `sluice ca`/ },
    { args: ["help", "bogus"], says: /no command "bogus"/ },
    { args: ["--version", "extra"], says: /^sluice: --version takes no arguments, got "extra"/ },
    { args: ["-V", "dump", "-p", "0"], says: /^sluice: -V takes no arguments, got "dump -p 0"/ },
    { args: ["--help", "dump", "extra"], says: /--help takes at most one command, got "dump extra": sluice help COMMAND/ },
    { args: ["--help", "bogus"], says: /no command "bogus"/ },
    { args: ["options", "--bogus"], says: /`sluice options` takes no arguments/ },
    { args: ["filters", "extra"], says: /`sluice filters` takes no arguments/ },
    { args: ["commands", "x"], says: /`sluice commands` takes no arguments/ },
    { args: ["addons", "x"], says: /`sluice addons` takes no arguments/ },
  ];

  test("each case: exit code != 0, exactly one line on stderr, no stack frames, nothing on stdout", { timeout: 300_000 }, async () => {
    const env = { ...process.env, HOME: home };
    const all = cases();
    // Four at a time: each is a fresh node process, and most fail before doing any work.
    const results = new Array<Awaited<ReturnType<typeof run>>>(all.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < all.length) {
          const i = next++;
          results[i] = await run(process.execPath, [SLUICE_BIN, ...all[i]!.args], { env, timeoutMs: 30_000 });
        }
      }),
    );
    const failures: string[] = [];
    all.forEach((c, i) => {
      const r = results[i]!;
      const what = `sluice ${c.args.join(" ")}`;
      try {
        assertOneLineError(r, c.says, what, c.code);
        assert.match(r.stderr, /^sluice: /, `${what}: the line starts with "sluice: "`);
        assert.equal(r.stdout, "", `${what}: nothing on stdout`);
      } catch (err) {
        failures.push(`${what}\n    exit ${r.code}, stderr: ${JSON.stringify(r.stderr)}\n    ${(err as Error).message.split("\n")[0]}`);
      }
    });
    assert.deepEqual(failures, [], `\n${failures.join("\n")}`);
  });

  test("-r FILE -w FILE refuses instead of emptying FILE before reading it; -w +FILE appends", async () => {
    const file = join(dir, "read-and-write.mitm");
    writeFileSync(file, "kept as it was\n");
    for (const w of [file, join(dir, ".", "read-and-write.mitm")]) {
      const r = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", file, "-w", w], { env: { ...process.env, HOME: home }, timeoutMs: 30_000 });
      assertOneLineError(r, /-r and -w name the same file .*read-and-write\.mitm: writing would empty it before it is read; write to another file, or append with -w \+/, "-r X -w X", 2);
      assert.equal(readFileSync(file, "utf8"), "kept as it was\n");
    }
  });

  test("--intercept in sluice dump warns that nothing there can resume a paused flow, unless the admin API can", async () => {
    const env = { ...process.env, HOME: home };
    const bare = await spawnSluice(["dump", "-p", "0", "--intercept", "~q"], { env });
    await bare.stop();
    assert.match(bare.stderr(), /warn: --intercept in sluice dump pauses matching flows with nothing here to resume them: each gets a 504 after intercept_timeout \(300 s\); use sluice console or sluice web .* --set admin_port=0/);
    const withAdmin = await spawnSluice(["dump", "-p", "0", "--intercept", "~q", "--set", "admin_port=0"], { env });
    await withAdmin.stop();
    assert.doesNotMatch(withAdmin.stderr(), /--intercept in sluice dump/);
  });

  test("-S with a file that holds no responses says so, instead of quietly replaying nothing", async () => {
    const empty = join(dir, "empty.mitm");
    writeFileSync(empty, "");
    const proc = await spawnSluice(["dump", "-p", "0", "-S", empty], { env: { ...process.env, HOME: home } });
    try {
      assert.match(proc.stderr(), /warn: server replay: no recorded responses in .*empty\.mitm; every request is handled as server_replay_extra=forward says/);
    } finally {
      await proc.stop();
    }
  });

  test("--faults and --shapes files that hold no rules say so, instead of quietly injecting and shaping nothing", async () => {
    const empty = join(dir, "no-rules.yaml");
    writeFileSync(empty, "");
    const emptyList = join(dir, "empty-faults-key.yaml");
    writeFileSync(emptyList, "faults:\n");
    const env = { ...process.env, HOME: home };
    for (const [args, says] of [
      [["--faults", empty], /warn: --faults .*no-rules\.yaml holds no rules, so no faults come from it; a rule looks like/],
      [["--faults", emptyList], /warn: --faults .*empty-faults-key\.yaml holds no rules/],
      [["--shapes", empty], /warn: --shapes .*no-rules\.yaml holds no rules, so nothing is shaped by it/],
    ] as [string[], RegExp][]) {
      const proc = await spawnSluice(["dump", "-p", "0", ...args], { env });
      await proc.stop();
      assert.match(proc.stderr(), says);
    }
  });

  test("an option that acts only beside another, given without it, is a warning naming what it needs", async () => {
    const env = { ...process.env, HOME: home };
    const proc = await spawnSluice(["dump", "-p", "0", "-r", emptyCapture, "--set", "statsd_prefix=team", "--set", "statsd_tags", "--set", "upstream_auth=u:p", "--set", "server_replay_reuse", "--set", "save_stream_filter=~q", "--set", "readfile_filter=~q"], { env });
    await proc.stop();
    const alone = { stderr: proc.stderr() };
    assert.match(alone.stderr, /warn: --set statsd_prefix, --set statsd_tags do nothing without --set statsd=HOST:PORT; add it, or drop them/);
    assert.match(alone.stderr, /warn: --set upstream_auth does nothing without --mode upstream:URL or --mode reverse:URL/);
    assert.match(alone.stderr, /warn: --set server_replay_reuse does nothing without -S FILE/);
    assert.match(alone.stderr, /warn: --set save_stream_filter does nothing without -w FILE or --set hardump=FILE/);
    assert.doesNotMatch(alone.stderr, /readfile_filter/, "-r is given");
    const viewInDump = await run(process.execPath, [SLUICE_BIN, "dump", "-n", "-r", emptyCapture, "--set", "view_filter=~s"], { env, timeoutMs: 30_000 });
    assert.match(viewInDump.stderr, /warn: --set view_filter does nothing without the console or the web UI, which list flows by it \(sluice dump prints by its FILTER argument\)/);
    const beside = await spawnSluice(["dump", "-p", "0", "--set", "statsd=127.0.0.1:8125", "--set", "statsd_prefix=team", "-S", emptyCapture, "--set", "server_replay_reuse", "-w", join(dir, "beside.mitm"), "--set", "save_stream_filter=~q"], { env });
    await beside.stop();
    assert.doesNotMatch(beside.stderr(), /does nothing without|do nothing without/);
  });

  test("-C with a bad file exits like -S with a bad file, before listening", async () => {
    const env = { ...process.env, HOME: home };
    const [client, server] = await Promise.all([
      run(process.execPath, [SLUICE_BIN, "dump", "-p", "0", "-C", corrupt], { env, timeoutMs: 30_000 }),
      run(process.execPath, [SLUICE_BIN, "dump", "-p", "0", "-S", corrupt], { env, timeoutMs: 30_000 }),
    ]);
    assert.equal(client.code, server.code, `-C: ${client.stderr} -S: ${server.stderr}`);
    assert.notEqual(client.code, 0);
    assert.doesNotMatch(client.stderr + server.stderr, /listening/);
  });
});

describe("-q keeps the lines a user needs", () => {
  const waitFor = async (text: () => string, re: RegExp): Promise<RegExpExecArray> => {
    for (let i = 0; i < 400; i++) {
      const m = re.exec(text());
      if (m) return m;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`never printed ${re}: ${text()}`);
  };

  test("sluice dump -q prints no flows but still prints the admin API (with its token) and the metrics address, which answer", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-quiet-"));
    const port = await freePort();
    const proc = await spawnSluice(["dump", "-q", "-p", String(port), "--confdir", confdir, "--set", "admin_port=0", "--set", "metrics_port=0"], { port });
    try {
      const admin = await waitFor(proc.stderr, /^sluice: admin API at (http:\/\/127\.0\.0\.1:\d+), token: (\S+)$/m);
      const metrics = await waitFor(proc.stderr, /^sluice: Prometheus metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)$/m);
      const faults = await fetch(`${admin[1]}/faults`, { headers: { authorization: `Bearer ${admin[2]}` } });
      assert.equal(faults.status, 200, "the printed token opens the admin API");
      assert.match(await (await fetch(metrics[1]!)).text(), /sluice_/);
      assert.equal(proc.stderr().trim().split("\n").length, 2, `only those two lines: ${proc.stderr()}`);
    } finally {
      await proc.stop();
    }
  });

  test("sluice web -q still prints the UI's URL with its token", async () => {
    const confdir = mkdtempSync(join(tmpdir(), "sluice-quiet-web-"));
    const port = await freePort();
    const proc = await spawnSluice(["web", "-q", "-p", String(port), "--confdir", confdir, "--set", "web_port=0"], { port });
    try {
      const web = await waitFor(proc.stderr, /^sluice: web UI at (http:\/\/127\.0\.0\.1:\d+\/\S*token=\S+)$/m);
      assert.equal((await fetch(web[1]!)).status, 200);
    } finally {
      await proc.stop();
    }
  });
});
