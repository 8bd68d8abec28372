// Opens each page of a running `host serve` in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) and prints, as JSON, what
// each page showed: its status, title and text, the console's errors, any
// script dialog, every request that went anywhere but the server, every
// answer of 400 or more, and a screenshot's path. tests/all/ui.rs runs it and checks the report.
//
// usage: node check.mjs BASE_URL USER PASSWORD SCREENSHOT_DIR PATH...

import { chromium } from "playwright-core";

const [base, username, password, shots, ...paths] = process.argv.slice(2);
if (!base || !shots || paths.length === 0) {
  console.error("usage: node check.mjs BASE_URL USER PASSWORD SCREENSHOT_DIR PATH...");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // No connection of Chromium's own (updates, sync, safe browsing): this
  // machine's network is closed, and the test checks where requests go.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const report = [];
try {
  const context = await browser.newContext({
    httpCredentials: { username, password },
    viewport: { width: 1280, height: 900 },
  });
  for (const path of paths) {
    const page = await context.newPage();
    const seen = { path, console_errors: [], outside_requests: [], dialogs: [], failed: [] };
    page.on("console", (message) => {
      if (message.type() === "error") seen.console_errors.push(message.text());
    });
    page.on("pageerror", (error) => seen.console_errors.push(String(error)));
    page.on("dialog", async (dialog) => {
      seen.dialogs.push(dialog.message());
      await dialog.dismiss();
    });
    page.on("response", (response) => {
      if (response.status() >= 400) seen.failed.push(`${response.status()} ${response.url()}`);
    });
    page.on("request", (request) => {
      if (!request.url().startsWith(base)) seen.outside_requests.push(request.url());
    });
    const started = Date.now();
    const response = await page.goto(base + path, { waitUntil: "load" });
    seen.load_ms = Date.now() - started;
    seen.status = response ? response.status() : 0;
    seen.title = await page.title();
    seen.text = await page.evaluate(() => document.body.innerText);
    seen.svg_charts = await page.evaluate(() => document.querySelectorAll("svg").length);
    seen.stylesheet_applied = await page.evaluate(
      () => getComputedStyle(document.querySelector("header")).display === "flex",
    );
    const name = path.replace(/[^a-z0-9]+/gi, "_").replace(/^_|_$/g, "") || "root";
    seen.screenshot = `${shots}/${name}.png`;
    await page.screenshot({ path: seen.screenshot, fullPage: true });
    report.push(seen);
    await page.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
