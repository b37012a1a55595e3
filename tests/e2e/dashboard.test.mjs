// The on-call dashboard (GET /admin/ on the admin listener) in headless Chromium: it asks for the
// admin token once, shows the route, the mode and vendor health live, and flips the mode through
// its buttons with a reason, an expiry and a confirmation step; GET /v1/route follows. With the
// real vendor (sockudo) installed the vendor card and its canary chart have data; without it the
// dashboard shows understudy's own route. Saves artifacts/e2e/dashboard.png.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Understudy, Sockudo, launchBrowser, openPage, until, cleanup, ARTIFACTS, PUBLISHER_KEY, CHANNEL,
} from "./harness.mjs";

const TOKEN = "e2e-admin-token-0123456789";
const WHO = "oncall-e2e";
const vendor = new Sockudo();
// Its own audit trail, so the page shows this run's entries only.
const auditDir = mkdtempSync(join(tmpdir(), "understudy-e2e-audit-"));
const server = new Understudy("dashboard", {}, [
  "[auth]",
  "admin_tokens = [{ name = " + JSON.stringify(WHO) + ", token = " + JSON.stringify(TOKEN) + " }]",
  "[audit]",
  "dir = " + JSON.stringify(auditDir),
].join("\n"));
let browser, traffic;
after(async () => {
  clearInterval(traffic);
  await cleanup(browser, server, vendor);
});

async function publish(n) {
  await fetch(server.base + "/v1/publish", {
    method: "POST",
    headers: { Authorization: "Bearer " + PUBLISHER_KEY, "Content-Type": "application/json" },
    body: JSON.stringify({ channel: CHANNEL, name: "dashboard.tick", data: { n } }),
  }).catch(() => {});
}

test("the dashboard shows the route and flips the mode with a reason, an expiry and a confirmation",
  { timeout: 120000 }, async () => {
    const withVendor = Sockudo.available();
    if (withVendor) await vendor.start("dashboard");
    await server.start(withVendor ? { UNDERSTUDY_VENDOR_URL: vendor.url, UNDERSTUDY_VENDOR_CA_FILE: vendor.caFile } : {});
    if (withVendor) await until("the vendor route", async () => (await server.route()).route === "vendor", 30000, 200);
    const before = (await server.route()).route;
    const target = before === "vendor" ? "self" : "poll";

    // Something to show: a waiting-room screen and a few events per second.
    let n = 0;
    traffic = setInterval(() => publish(n++), 250);
    browser = await launchBrowser();
    await openPage(browser, "dashboard-board", server.base + "/demo/waiting-room");

    const admin = "http://127.0.0.1:" + server.adminPort;
    // A vendor's announced maintenance, tomorrow: the dashboard lists it.
    const tomorrow = Date.now() + 24 * 3600 * 1000;
    const scheduled = await fetch(admin + "/admin/maintenance", {
      method: "PUT",
      headers: { Authorization: "Bearer " + TOKEN, "Content-Type": "application/json" },
      body: JSON.stringify({ start: tomorrow, end: tomorrow + 3600 * 1000, mode: "self", reason: "vendor maintenance VM-7" }),
    });
    assert.ok(scheduled.ok, "PUT /admin/maintenance answered " + scheduled.status);
    const page = await openPage(browser, "dashboard", admin + "/admin/");
    const elsewhere = [];
    page.on("request", (r) => { if (!r.url().startsWith(admin + "/") && !r.url().startsWith("data:")) elsewhere.push(r.url()); });
    await page.setViewportSize({ width: 1440, height: 1000 });

    // The token is asked for once, then kept in the tab.
    await page.waitForSelector("#login[open]", { timeout: 5000 });
    await page.fill("#token-input", TOKEN);
    await page.click("#token-submit");
    await page.waitForFunction(() => document.getElementById("feed").dataset.state === "live", null, { timeout: 10000 });
    assert.equal(await page.evaluate(() => sessionStorage.getItem("understudy.admin-token")), TOKEN);
    assert.equal(await page.textContent("#viewer"), "signed in as " + WHO);
    assert.equal(await page.textContent("#route-name"), before.toUpperCase());
    assert.equal(await page.textContent("#mode-name"), "AUTO");
    assert.match(await page.textContent("#transitions"), /maintenance .* → self\s*vendor maintenance VM-7/);

    // The confirmation step: choosing, explaining and reviewing changes nothing yet.
    await page.click("#mode-btn-" + target);
    await page.click("#mode-review");
    assert.match(await page.textContent("#mode-result"), /reason is required/);
    await page.fill("#mode-reason", "vendor incident drill INC-42");
    await page.selectOption("#mode-expiry-in", "30m");
    await page.click("#mode-review");
    await page.waitForSelector("#mode-confirm-box:not([hidden])");
    assert.match(await page.textContent("#mode-confirm-text"), new RegExp("Force " + target.toUpperCase() + " for 30 minutes"));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await server.route()).route, before, "nothing changes before the confirmation");

    await page.click("#mode-confirm");
    await page.waitForFunction((who) => document.getElementById("mode-result").textContent.includes("set by " + who), WHO, { timeout: 5000 });
    await until("GET /v1/route to say " + target, async () => (await server.route()).route === target, 5000, 100);
    const route = await server.route();
    assert.equal(route.mode, target);

    // The page follows from its live feed, and the audit trail says who did it.
    await page.waitForFunction((t) => document.getElementById("route-name").textContent === t.toUpperCase(), target, { timeout: 5000 });
    assert.equal(await page.textContent("#mode-name"), "FORCED " + target.toUpperCase());
    assert.match(await page.textContent("#mode-who"), new RegExp("Set by " + WHO + ": “vendor incident drill INC-42”"));
    await page.waitForFunction((who) => Array.from(document.querySelectorAll("#audit tr[data-action=mode_changed] td.who"))
      .some((td) => td.textContent === who), WHO, { timeout: 10000 });
    assert.equal(await page.evaluate(() => document.body.dataset.level), "degraded");

    // A few points on the 15-minute charts, then the picture.
    await page.waitForFunction(() => window.dashboard.series && window.dashboard.series.t.length >= 4, null, { timeout: 40000, polling: 500 });
    await page.waitForFunction(() => window.dashboard.last.now.published_per_s > 0, null, { timeout: 10000 });
    assert.ok(await page.$("#chart-events svg path"), "the events chart has a line");
    assert.deepEqual(elsewhere, [], "the dashboard fetched nothing from another origin");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
  });
