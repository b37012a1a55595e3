// The vendor path on Ably, against a real sockudo speaking Ably's protocol and the client's
// built-in Ably adapter (the page loads no Ably SDK): the board gets a TokenRequest from
// POST /v1/vendor/auth, exchanges it at sockudo for a token, and listens on Ably's JSON realtime
// WebSocket.
//   (1) a check-in appears on the waiting room within 1 s on the vendor path;
//   (2) the vendor hangs (SIGSTOP): check-ins keep appearing within 5 s of the hang starting,
//       nothing lost or shown twice, and the badge shows the fallback;
//   (3) the vendor comes back (SIGCONT): the board returns to the vendor path within the window
//       the route announces, with a fresh token, still with nothing lost or doubled.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import {
  Understudy, Sockudo, SOCKUDO, launchBrowser, openPage, until, waitForTickets, waitForBadge,
  checkInSeen, assertDeliveredOnce, screenshot, cleanup, testCertificates,
} from "./harness.mjs";

const vendor = new Sockudo();
// Vendor heartbeats every 800 ms: a board on the vendor path notices a silent vendor after three
// missed beats (2.4 s), well within the 5 s the hang scenario allows. Clients move back to a
// recovered vendor over 5 s instead of 30 s, to keep the test short.
const server = new Understudy("vendor-ably", {}, "[vendors]\nheartbeat_ms = 800\nmove_back_jitter_ms = 5000");
let browser, board, kiosk;
const tokenExchanges = []; // the board's requests to the vendor's requestToken endpoint
after(() => cleanup(browser, server, vendor));

async function whyNot() {
  if (!Sockudo.available()) return "sockudo is not installed at " + SOCKUDO + " (scripts/test installs it)";
  await vendor.start("vendor-ably");
  await server.start({ UNDERSTUDY_VENDOR_URL: vendor.ablyUrl, UNDERSTUDY_VENDOR_CA_FILE: vendor.caFile });
  return null;
}
const skip = await whyNot();
if (skip) await cleanup(server, vendor);

async function routeIs(path, ms) {
  await until("GET /v1/route to say " + path, async () => (await server.route()).route === path, ms, 200);
  return server.route();
}

describe("the vendor path on Ably", { skip: skip || false }, () => {
  it("(1) a check-in appears within 1 s on the vendor path, with no Ably SDK on the page", { timeout: 60000 }, async (t) => {
    const route = await routeIs("vendor", 30000);
    assert.deepEqual(route.vendor, { kind: "ably", key: "app-key", host: "127.0.0.1", port: vendor.tls.port, tls: true, private: true });
    // The vendor is reached over TLS (its token exchange and its WebSocket) through the
    // harness's terminator; Chromium trusts only that key.
    browser = await launchBrowser(["--ignore-certificate-errors-spki-list=" + testCertificates().spki]);
    kiosk = await openPage(browser, "vendor-ably-kiosk", server.base + "/demo/kiosk");
    board = await openPage(browser, "vendor-ably", server.base + "/demo/waiting-room");
    board.on("request", (r) => { if (r.url().includes("/requestToken")) tokenExchanges.push(r.url()); });
    await waitForBadge(board, "Live via vendor", 10000 + 2 * route.vendor_heartbeat_ms);
    assert.equal(await board.evaluate(() => typeof window.Ably), "undefined");
    for (const ticket of ["A-1", "A-2"]) {
      const { total, published } = await checkInSeen(kiosk, board, ticket, 1000);
      t.diagnostic(`${ticket} on the vendor path: ${published} ms after publishing, ${total} ms after the click`);
    }
    await waitForTickets(board, ["A-1", "A-2"]);
    await screenshot(board, "vendor-ably-live");
  });

  it("(2) the vendor hangs: check-ins keep appearing within 5 s, through the fallback", { timeout: 60000 }, async (t) => {
    const hungAt = Date.now();
    vendor.hang();
    const h1 = await checkInSeen(kiosk, board, "H-1", 5000 - (Date.now() - hungAt));
    t.diagnostic(`H-1 shown ${Date.now() - hungAt} ms after the hang started (${h1.published} ms after publishing)`);
    await waitForBadge(board, /^Live via fallback \((WebSocket|SSE)\)$/, 30000);
    await checkInSeen(kiosk, board, "H-2", 1000);
    await waitForTickets(board, ["A-1", "A-2", "H-1", "H-2"]);
    await assertDeliveredOnce(board);
    await screenshot(board, "vendor-ably-hung");
  });

  it("(3) the vendor comes back: the board returns to it within the announced window", { timeout: 120000 }, async (t) => {
    vendor.resume();
    const resumedAt = Date.now();
    const before = tokenExchanges.length;
    const route = await routeIs("vendor", 60000);
    const window = route.jitter_ms + 3 * route.vendor_heartbeat_ms + 10000;
    await waitForBadge(board, "Live via vendor", window);
    t.diagnostic(`back on the vendor ${Date.now() - resumedAt} ms after SIGCONT (window ${window} ms after the route says vendor)`);
    assert.ok(tokenExchanges.length > before, "the board took a fresh token from the vendor to come back");
    await checkInSeen(kiosk, board, "B-1", 1000);
    await waitForTickets(board, ["A-1", "A-2", "H-1", "H-2", "B-1"]);
    const events = await assertDeliveredOnce(board);
    assert.deepEqual(events.map((e) => e.ticket), ["A-1", "A-2", "H-1", "H-2", "B-1"]);
    await screenshot(board, "vendor-ably-back");
  });
});
