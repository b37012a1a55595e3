// Signal-only channels on the vendor path, against a real sockudo (Pusher protocol) behind the
// harness's TLS terminator and the page's own pusher-js, in Chromium:
//   (1) without vendors.signal_only, check-ins reach the board through the vendor with their
//       bodies on the vendor (the baseline click-to-screen times);
//   (2) after a reload that adds signal_only = ["clinic-*"], the vendor carries only
//       {type: "signal", channel, epoch, seq, id}: no ticket ever crosses it, the board fetches
//       the bodies from understudy's history with its own token, and every check-in appears
//       within 1 s, in order, once, still on the vendor path (the signal-only click-to-screen
//       times, reported beside the baseline);
//   (3) a burst of check-ins sent together: every one appears, in seq order, none twice.
// The times go to the test's diagnostics and artifacts/e2e/vendor-signal-latency.json.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  Understudy, Sockudo, SOCKUDO, ARTIFACTS, launchBrowser, openPage, until, waitForBadge,
  checkInSeen, assertDeliveredOnce, screenshot, cleanup, testCertificates,
} from "./harness.mjs";

const ADMIN = "e2e-signal-admin-token-0123456789";
const VENDORS = "[vendors]\nheartbeat_ms = 800";
const ROUNDS = 10;
const HISTORY = "/v1/channels/clinic-42.waiting-room/events";

const vendor = new Sockudo();
const server = new Understudy("vendor-signal", { UNDERSTUDY_ADMIN_TOKEN: ADMIN }, VENDORS);
let browser, board, kiosk;
const frames = []; // text frames the board received from the vendor
const fetches = []; // the board's history requests
const times = { plain: [], signal: [] }; // click to screen
const sincePublish = { plain: [], signal: [] }; // the event's ts to screen
after(() => cleanup(browser, server, vendor));

before(async () => {
  assert.ok(Sockudo.available(), "sockudo is not installed at " + SOCKUDO + " (scripts/test installs it)");
  await vendor.start("vendor-signal");
  await server.start({ UNDERSTUDY_VENDOR_URL: vendor.url, UNDERSTUDY_VENDOR_CA_FILE: vendor.caFile });
});

const vendorFrames = (from) => frames.slice(from).filter((f) => f.includes("understudy.event"));
const stats = (xs) => {
  const s = xs.slice().sort((a, b) => a - b);
  return { n: s.length, median: s[Math.floor(s.length / 2)], p90: s[Math.ceil(s.length * 0.9) - 1], max: s[s.length - 1] };
};

// Checks in ROUNDS tickets one by one on the vendor path; answers their click-to-screen times.
async function rounds(t, prefix, into, published) {
  const statuses = await board.evaluate(() => window.demoBoard.statuses.length);
  for (let i = 1; i <= ROUNDS; i++) {
    const { total, published: since } = await checkInSeen(kiosk, board, `${prefix}-${i}`, 1000);
    into.push(total);
    published.push(since);
    t.diagnostic(`${prefix}-${i}: ${total} ms after the click, ${since} ms after publishing`);
  }
  assert.equal(await board.evaluate(() => window.demoBoard.statuses.length), statuses, "the board never left the vendor path");
  await waitForBadge(board, "Live via vendor", 1000);
}

describe("signal-only channels on the vendor path", () => {
  it("(1) without signal_only: bodies cross the vendor (baseline)", { timeout: 90000 }, async (t) => {
    await until("GET /v1/route to say vendor", async () => (await server.route()).route === "vendor", 30000, 200);
    browser = await launchBrowser(["--ignore-certificate-errors-spki-list=" + testCertificates().spki]);
    kiosk = await openPage(browser, "vendor-signal-kiosk", server.base + "/demo/kiosk");
    board = await browser.newContext({ viewport: { width: 1280, height: 720 } }).then((c) => c.newPage());
    board.on("websocket", (ws) => {
      if (ws.url().includes(":" + vendor.tls.port + "/")) ws.on("framereceived", (f) => frames.push(String(f.payload)));
    });
    board.on("request", (r) => { if (r.url().includes(HISTORY)) fetches.push(r.url()); });
    await board.goto(server.base + "/demo/waiting-room");
    await waitForBadge(board, "Live via vendor", 20000);
    const from = frames.length;
    await rounds(t, "P", times.plain, sincePublish.plain);
    const seen = vendorFrames(from).join("\n");
    for (let i = 1; i <= ROUNDS; i++) assert.ok(seen.includes(`P-${i}`), `P-${i} crossed the vendor with its body`);
  });

  it("(2) signal_only after a reload: only signals cross the vendor; bodies come from history", { timeout: 90000 }, async (t) => {
    server.toml = VENDORS + '\nsignal_only = ["clinic-*"]';
    server.writeConfig();
    const r = await fetch("http://127.0.0.1:" + server.adminPort + "/admin/reload", {
      method: "POST", headers: { Authorization: "Bearer " + ADMIN },
    });
    const answer = await r.json();
    assert.equal(r.status, 200, JSON.stringify(answer));
    assert.deepEqual([answer.changed, answer.vendors_rebuilt], [["vendors"], false], JSON.stringify(answer));
    const from = frames.length, fetchedBefore = fetches.length;
    await rounds(t, "S", times.signal, sincePublish.signal);
    const got = vendorFrames(from);
    for (let i = 1; i <= ROUNDS; i++) assert.ok(!got.join("\n").includes(`S-${i}`), `S-${i} crossed the vendor: ${got.join("\n")}`);
    // Pusher frames carry the signal as a JSON string in `data`.
    const signals = got.map((f) => JSON.parse(JSON.parse(f).data));
    assert.equal(signals.length, ROUNDS, JSON.stringify(signals));
    for (const s of signals) assert.deepEqual(Object.keys(s).sort(), ["channel", "epoch", "id", "seq", "type"]);
    assert.ok(signals.every((s) => s.type === "signal"), JSON.stringify(signals));
    assert.ok(fetches.length - fetchedBefore >= ROUNDS, "the board fetched each body from history");
    await assertDeliveredOnce(board);
    const report = {
      rounds: ROUNDS,
      click_to_screen_ms: { plain: stats(times.plain), signal_only: stats(times.signal) },
      publish_to_screen_ms: { plain: stats(sincePublish.plain), signal_only: stats(sincePublish.signal) },
      raw: { times, sincePublish },
    };
    writeFileSync(join(ARTIFACTS, "vendor-signal-latency.json"), JSON.stringify(report, null, 2));
    t.diagnostic("click-to-screen: " + JSON.stringify(report.click_to_screen_ms));
    t.diagnostic("publish-to-screen: " + JSON.stringify(report.publish_to_screen_ms));
    await screenshot(board, "vendor-signal-live");
  });

  it("(3) a burst of check-ins: every one once, in seq order, through signals", { timeout: 60000 }, async (t) => {
    const burst = ["B-1", "B-2", "B-3", "B-4", "B-5", "B-6"];
    const from = frames.length, fetchedBefore = fetches.length;
    const answers = await Promise.all(burst.map((ticket) => fetch(server.base + "/demo/api/check-in", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ticket }),
    }).then((r) => r.status)));
    assert.deepEqual(answers, burst.map(() => 200));
    await board.waitForFunction((want) => want.every((b) => window.demoBoard.events.some((e) => e.ticket === b)),
      burst, { timeout: 5000, polling: 50 });
    const events = await assertDeliveredOnce(board);
    assert.deepEqual(events.filter((e) => e.ticket.startsWith("B-")).map((e) => e.ticket).sort(), burst);
    assert.ok(!vendorFrames(from).join("\n").includes("B-"), "no ticket crossed the vendor");
    t.diagnostic(`${burst.length} signals, ${fetches.length - fetchedBefore} history fetches`);
    await waitForBadge(board, "Live via vendor", 1000);
  });
});
