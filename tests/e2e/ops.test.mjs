// The demo's ops page (/demo/ops, on the public listener) sets the operator's mode through the
// admin listener, another origin: its buttons work from the browser (the admin listener answers
// the CORS preflight for the origins in server.admin_cors_allow_origins), and GET /v1/route
// follows. Saves artifacts/e2e/ops-mode.png.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { Understudy, launchBrowser, openPage, until, cleanup, screenshot } from "./harness.mjs";

const TOKEN = "e2e-ops-admin-token-0123456789";
const server = new Understudy("ops", { UNDERSTUDY_ADMIN_TOKEN: TOKEN });
let browser;
after(() => cleanup(browser, server));

async function click(page, mode, expect) {
  await page.fill("#reason", "ops page drill " + mode);
  await page.click(`button[data-mode="${mode}"]`);
  await page.waitForFunction((want) => document.getElementById("mode-result").textContent === want,
    expect, { timeout: 5000, polling: 50 }).catch(async () => {
    assert.equal(await page.textContent("#mode-result"), expect, "the ops page's answer");
  });
}

test("the ops page's mode buttons change the route from the browser", { timeout: 60000 }, async () => {
  await server.start();
  assert.equal((await server.route()).route, "self", "no vendor: understudy's own path");
  browser = await launchBrowser();
  const page = await openPage(browser, "ops", server.base + "/demo/ops");
  await page.fill("#admin-url", "http://127.0.0.1:" + server.adminPort);
  await page.fill("#admin-token", TOKEN);
  await page.fill("#expires", "10m");

  await click(page, "poll", "Mode is now poll.");
  await until("GET /v1/route to say poll", async () => (await server.route()).route === "poll", 5000, 100);
  assert.equal((await server.route()).mode, "poll");
  await page.waitForFunction(() => document.getElementById("route-note").textContent.includes("poll (mode poll"),
    null, { timeout: 5000 });
  await screenshot(page, "ops-mode");

  await click(page, "auto", "Mode is now auto.");
  await until("GET /v1/route to say self", async () => (await server.route()).route === "self", 5000, 100);
  assert.equal((await server.route()).mode, "auto");

  // A wrong token is refused with the admin API's own words, not a network error.
  await page.fill("#admin-token", "not-the-admin-token-0123456789");
  await click(page, "self", "missing or unknown admin token: send Authorization: Bearer <token> with a token from auth.admin_tokens");
  assert.equal((await server.route()).mode, "auto");
});
