// The vendor path, against a real sockudo (Pusher protocol) behind a TLS terminator, and the
// page's own pusher-js (served by understudy at /demo/vendor/pusher.min.js from node_modules)
// connecting over wss://. understudy trusts the test CA through UNDERSTUDY_VENDOR_CA_FILE;
// Chromium trusts only the terminator's key (--ignore-certificate-errors-spki-list):
//   (1) a check-in appears on the waiting room within 1 s on the vendor path;
//   (2) the vendor hangs (SIGSTOP): check-ins keep appearing within 5 s of the hang starting,
//       nothing lost or shown twice, and the badge shows the fallback;
//   (4) the vendor comes back (SIGCONT): the board returns to the vendor path within the window
//       the route announces, still with nothing lost or doubled.
// A missing component (sockudo, a route) fails the suite: scripts/test installs them all.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  Understudy, Sockudo, SOCKUDO, launchBrowser, openPage, until, waitForTickets, waitForBadge,
  checkInSeen, assertDeliveredOnce, screenshot, cleanup, testCertificates,
} from "./harness.mjs";

const vendor = new Sockudo();
// Vendor heartbeats every 800 ms: a board on the vendor path notices a silent vendor after three
// missed beats (2.4 s), well within the 5 s the hang scenario allows. Clients move back to a
// recovered vendor over 5 s instead of 30 s, to keep the test short.
const server = new Understudy("vendor", {}, "[vendors]\nheartbeat_ms = 800\nmove_back_jitter_ms = 5000");
let browser, board, kiosk;
after(() => cleanup(browser, server, vendor));

before(async () => {
  assert.ok(Sockudo.available(), "sockudo is not installed at " + SOCKUDO + " (scripts/test installs it)");
  await vendor.start("vendor");
  await server.start({ UNDERSTUDY_VENDOR_URL: vendor.url, UNDERSTUDY_VENDOR_CA_FILE: vendor.caFile });
  assert.ok(await server.route(), "GET /v1/route must answer: understudy announces the route");
});

async function routeIs(path, ms) {
  await until("GET /v1/route to say " + path, async () => (await server.route()).route === path, ms, 200);
  return server.route();
}

describe("the vendor path, over TLS", () => {
  it("(1) a check-in appears within 1 s on the vendor path", { timeout: 60000 }, async () => {
    const route = await routeIs("vendor", 30000);
    assert.equal(route.vendor.tls, true, "browsers are told to use TLS: " + JSON.stringify(route));
    browser = await launchBrowser(["--ignore-certificate-errors-spki-list=" + testCertificates().spki]);
    kiosk = await openPage(browser, "vendor-kiosk", server.base + "/demo/kiosk");
    board = await openPage(browser, "vendor", server.base + "/demo/waiting-room");
    await waitForBadge(board, "Live via vendor", 10000 + 2 * route.vendor_heartbeat_ms);
    await checkInSeen(kiosk, board, "V-1", 1000);
    await checkInSeen(kiosk, board, "V-2", 1000);
    await waitForTickets(board, ["V-1", "V-2"]);
    await screenshot(board, "vendor-live");
  });

  it("(2) the vendor hangs: check-ins keep appearing within 5 s, through the fallback", { timeout: 60000 }, async () => {
    const hungAt = Date.now();
    vendor.hang();
    await checkInSeen(kiosk, board, "H-1", 5000 - (Date.now() - hungAt));
    await waitForBadge(board, /^Live via fallback \((WebSocket|SSE)\)$/, 30000);
    await checkInSeen(kiosk, board, "H-2", 1000);
    await waitForTickets(board, ["V-1", "V-2", "H-1", "H-2"]);
    await assertDeliveredOnce(board);
    await screenshot(board, "vendor-hung");
  });

  it("(4) the vendor comes back: the board returns to it within the announced window", { timeout: 120000 }, async () => {
    vendor.resume();
    const route = await routeIs("vendor", 60000);
    const window = route.jitter_ms + 3 * route.vendor_heartbeat_ms + 10000;
    await waitForBadge(board, "Live via vendor", window);
    await checkInSeen(kiosk, board, "B-1", 1000);
    await waitForTickets(board, ["V-1", "V-2", "H-1", "H-2", "B-1"]);
    const events = await assertDeliveredOnce(board);
    assert.deepEqual(events.map((e) => e.ticket), ["V-1", "V-2", "H-1", "H-2", "B-1"]);
    await screenshot(board, "vendor-back");
  });
});
