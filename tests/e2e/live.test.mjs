// Scenario (a): a kiosk check-in appears on the waiting-room board within 1 s over understudy's
// own WebSocket, on top of the list the board loaded from the demo backend.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import {
  Understudy, launchBrowser, openPage, waitForTickets, waitForBadge, checkIn, checkInSeen,
  assertDeliveredOnce, screenshot, cleanup,
} from "./harness.mjs";

const server = new Understudy("live");
let browser;
after(() => cleanup(browser, server));

test("a kiosk check-in appears on the waiting room within 1 s over WebSocket", { timeout: 60000 }, async () => {
  await server.start();
  browser = await launchBrowser();
  const kiosk = await openPage(browser, "live-kiosk", server.base + "/demo/kiosk");
  await checkIn(kiosk, "A-17"); // before the board opens: it comes from the backend's list

  const board = await openPage(browser, "live", server.base + "/demo/waiting-room");
  await waitForBadge(board, "Live via fallback (WebSocket)");
  await waitForTickets(board, ["A-17"]);

  for (const ticket of ["B-4", "C-12", "A-18"]) {
    const took = await checkInSeen(kiosk, board, ticket, 1000);
    console.log("# " + ticket + ": on the board " + took.total + " ms after the click, " + took.published + " ms after publish");
  }
  await waitForTickets(board, ["A-17", "B-4", "C-12", "A-18"]);
  assert.match(await checkIn(kiosk, "b-4"), /already checked in/);

  const events = await assertDeliveredOnce(board);
  assert.deepEqual(events.map((e) => e.ticket), ["B-4", "C-12", "A-18"]);
  assert.deepEqual(await board.evaluate(() => window.demoBoard.resets), []);
  await waitForBadge(board, "Live via fallback (WebSocket)");
  await screenshot(board, "live-websocket");
  await screenshot(kiosk, "live-kiosk");
});

test("the ops page shows the route clients are told to use", { timeout: 30000 }, async () => {
  const ops = await openPage(browser, "ops", server.base + "/demo/ops");
  await ops.waitForFunction(() => /told to use: self/.test(document.getElementById("route-note").textContent),
    null, { timeout: 10000, polling: 100 });
  const route = JSON.parse(await ops.$eval("#route", (el) => el.textContent));
  assert.equal(route.route, "self");
  await waitForBadge(ops, "Live via fallback (WebSocket)");
  await screenshot(ops, "ops");
});
