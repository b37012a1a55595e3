// Signal-only channels on Ably: sockudo speaking Ably's protocol behind the harness's TLS
// terminator, the client's built-in Ably adapter in Chromium, signal_only = ["clinic-*"] from the
// start. Every check-in appears within 1 s, once and in order, on the vendor path; the Ably
// messages the board received carry signals named understudy.signal and no ticket.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import {
  Understudy, Sockudo, SOCKUDO, launchBrowser, until, waitForBadge, checkInSeen,
  assertDeliveredOnce, screenshot, cleanup, testCertificates, openPage,
} from "./harness.mjs";

const vendor = new Sockudo();
const server = new Understudy("vendor-signal-ably", {}, '[vendors]\nheartbeat_ms = 800\nsignal_only = ["clinic-*"]');
let browser;
const messages = []; // Ably messages the board received on the clinic channel
after(() => cleanup(browser, server, vendor));

async function whyNot() {
  if (!Sockudo.available()) return "sockudo is not installed at " + SOCKUDO + " (scripts/test installs it)";
  await vendor.start("vendor-signal-ably");
  await server.start({ UNDERSTUDY_VENDOR_URL: vendor.ablyUrl, UNDERSTUDY_VENDOR_CA_FILE: vendor.caFile });
  return null;
}
const skip = await whyNot();
if (skip) await cleanup(server, vendor);

describe("signal-only channels on Ably", { skip: skip || false }, () => {
  it("check-ins arrive as signals and are shown once, in order, from history", { timeout: 90000 }, async (t) => {
    await until("GET /v1/route to say vendor", async () => (await server.route()).route === "vendor", 30000, 200);
    browser = await launchBrowser(["--ignore-certificate-errors-spki-list=" + testCertificates().spki]);
    const kiosk = await openPage(browser, "vendor-signal-ably-kiosk", server.base + "/demo/kiosk");
    const board = await browser.newContext({ viewport: { width: 1280, height: 720 } }).then((c) => c.newPage());
    board.on("websocket", (ws) => {
      if (!ws.url().includes(":" + vendor.tls.port + "/")) return;
      ws.on("framereceived", (f) => {
        let m;
        try { m = JSON.parse(String(f.payload)); } catch (e) { return; }
        if (m.action === 15 && m.channel === "clinic-42.waiting-room") messages.push(...(m.messages || []));
      });
    });
    await board.goto(server.base + "/demo/waiting-room");
    await waitForBadge(board, "Live via vendor", 20000);
    const statuses = await board.evaluate(() => window.demoBoard.statuses.length);
    const tickets = ["AS-1", "AS-2", "AS-3", "AS-4", "AS-5"];
    for (const ticket of tickets) {
      const { total, published } = await checkInSeen(kiosk, board, ticket, 1000);
      t.diagnostic(`${ticket}: ${total} ms after the click, ${published} ms after publishing`);
    }
    assert.equal(await board.evaluate(() => window.demoBoard.statuses.length), statuses, "the board never left the vendor path");
    const events = await assertDeliveredOnce(board);
    assert.deepEqual(events.map((e) => e.ticket), tickets);
    assert.equal(messages.length, tickets.length, JSON.stringify(messages));
    for (const m of messages) {
      assert.equal(m.name, "understudy.signal");
      assert.ok(!JSON.stringify(m).includes("AS-"), "a ticket crossed the vendor: " + JSON.stringify(m));
      assert.equal(JSON.parse(m.data).type, "signal");
    }
    await screenshot(board, "vendor-signal-ably");
  });
});
