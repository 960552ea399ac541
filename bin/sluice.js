#!/usr/bin/env -S node --max-semi-space-size=2
// The flag caps V8's young generation (2 MB per semi-space instead of up to 16): under sustained
// load `sluice dump` then stays near 110 MB of RSS instead of 140–165, for a few % more CPU per
// request (README "Memory"). To choose another size: node --max-semi-space-size=N path/to/sluice …
import { main } from "../dist/src/cli/main.js";
await main(process.argv.slice(2));
