// Reconnect storms, in a real browser: past the new-subscriber rate Chromium's WebSocket sees
// close 1013 with the wait in its reason, and its EventSource a reconnect message, where a 503
// would have reached the page as a bare error with neither status nor body.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { Understudy, launchBrowser, openPage, cleanup } from "./harness.mjs";

// One place a second, one in the bucket, no jitter: the second and third attempts are refused.
const server = new Understudy("storm", { UNDERSTUDY_SUBSCRIBE_AUTH: "none" }, "",
  "max_new_subscribers_per_second = 1\nnew_subscribers_burst = 1\nreconnect_later_jitter_ms = 0");
let browser;
after(() => cleanup(browser, server));

test("a refused browser reads the wait from close 1013 and from the SSE stream", { timeout: 60000 }, async () => {
  await server.start();
  browser = await launchBrowser();
  const page = await openPage(browser, "storm", server.base + "/healthz");
  const seen = await page.evaluate(async (base) => {
    const ws = (url) => new Promise((resolve) => {
      const s = new WebSocket(url);
      s.onmessage = (e) => resolve({ message: JSON.parse(e.data), socket: s });
      s.onclose = (e) => resolve({ code: e.code, reason: e.reason });
    });
    const url = base.replace(/^http/, "ws") + "/v1/ws?channel=storm";
    const first = await ws(url);
    const second = await ws(url);
    const sse = await new Promise((resolve) => {
      const s = new EventSource(base + "/v1/sse?channel=storm");
      s.onmessage = (e) => { s.close(); resolve(JSON.parse(e.data)); };
      s.onerror = () => { s.close(); resolve({ error: true }); };
    });
    if (first.socket) first.socket.close();
    return { first: first.message, second, sse };
  }, server.base);
  assert.equal(seen.first.type, "welcome", "the first is admitted");
  assert.equal(seen.second.code, 1013);
  const reason = JSON.parse(seen.second.reason);
  assert.equal(reason.code, "reconnect_later");
  assert.ok(reason.retry_after_ms >= 1 && reason.retry_after_ms <= 1000, JSON.stringify(reason));
  assert.equal(seen.sse.type, "reconnect");
  assert.equal(seen.sse.reason, "reconnect_later");
  assert.ok(seen.sse.retry_ms >= 1 && seen.sse.retry_ms <= 1000, JSON.stringify(seen.sse));
});
