/** Opening a `sluice report --html` page in headless Chromium, as the report tests do. */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { chromium, type Page } from "playwright-core";

/**
 * Opens the HTML report `file` in headless Chromium (Debian's /usr/bin/chromium), checks it
 * loaded with no console errors or warnings and no request but itself (a self-contained page),
 * and hands the page to `check`.
 */
export async function inChromium(file: string, check: (page: Page) => Promise<void>): Promise<void> {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium" });
  try {
    const page = await browser.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(m.text());
    });
    page.on("pageerror", (e) => problems.push(e.message));
    page.on("request", (req) => requests.push(req.url()));
    await page.goto(pathToFileURL(file).href);
    assert.deepEqual(problems, []);
    assert.deepEqual(requests, [pathToFileURL(file).href], "no external resources");
    await check(page);
  } finally {
    await browser.close();
  }
}
