/** The skip helpers: needs() for programs, needsPython() for a python3 module, asked once per process. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { needs, needsPython } from "./support/needs.js";

test("needs(): undefined for a program that runs, the one-line reason for one that does not", () => {
  assert.equal(needs(process.execPath, "nodejs"), undefined);
  assert.equal(needs("sluice-no-such-program", "no-such-package"), "SKIP: needs sluice-no-such-program (apt-get install -y no-such-package)");
});

test("needsPython(): an interpreter that imports the module passes, one that cannot gives the reason; each module is asked once", () => {
  // A stand-in interpreter that logs each question and imports only "present_mod".
  const dir = mkdtempSync(join(tmpdir(), "sluice-needs-"));
  const log = join(dir, "asked");
  const python = join(dir, "python3");
  writeFileSync(python, `#!/bin/sh\necho "$2" >> ${log}\n[ "$2" = "import present_mod" ]\n`);
  chmodSync(python, 0o755);
  for (let i = 0; i < 3; i++) {
    assert.equal(needsPython("present_mod", "python3-present", python), undefined);
    assert.equal(needsPython("absent_mod", "python3-absent", python), "SKIP: needs python3 module absent_mod (apt-get install -y python3-absent)");
  }
  assert.deepEqual(readFileSync(log, "utf8").trim().split("\n").sort(), ["import absent_mod", "import present_mod"]);
  assert.equal(needsPython("present_mod", "python3-present", join(dir, "missing-python")), "SKIP: needs python3 module present_mod (apt-get install -y python3-present)", "an interpreter that is not there");
});

test("needsPython() with the machine's python3: the standard library is there, a made-up module is not", { skip: needs("python3", "python3") }, () => {
  assert.equal(needsPython("json", "python3"), undefined);
  assert.equal(needsPython("sluice_no_such_module", "python3-sluice-nope"), "SKIP: needs python3 module sluice_no_such_module (apt-get install -y python3-sluice-nope)");
});
