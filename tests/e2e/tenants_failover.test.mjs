// Two tenants, each with its own vendor credentials on its own vendor: two sockudo processes
// (different app keys and secrets) behind the harness's TLS terminator, private channels on, and
// a page per tenant in Chromium running the understudy client with pusher-js on the vendor path:
//   (1) each page is live on its own tenant's vendor (GET /v1/route?channel= names it);
//   (2) tenant A's vendor hangs (SIGSTOP): only A's page moves to understudy's own transport
//       (route and badge), B's page stays on its vendor and its route never changes;
//   (3) A's vendor comes back (SIGCONT): A's page returns to it.
// While A's vendor hangs, the on-call dashboard's Tenants panel shows A on SELF, B on VENDOR.
// Throughout, events are published to both tenants' channels; each page gets every event of
// its channel exactly once, in order.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  Understudy, Sockudo, SOCKUDO, launchBrowser, openPage, until, waitForBadge, badge, screenshot, cleanup, testCertificates,
} from "./harness.mjs";

const A = { id: "clinic-a", channel: "clinic-42.waiting-room", key: "e2e-publisher-key-clinic-a" };
const B = { id: "clinic-b", channel: "clinic-42.lobby", key: "e2e-publisher-key-clinic-b" };
const vendorA = new Sockudo({ key: "key-clinic-a", secret: "secret-clinic-a" });
const vendorB = new Sockudo({ key: "key-clinic-b", secret: "secret-clinic-b" });
const ADMIN = "e2e-tenants-admin-token-0123456789";
let server, browser;
const pages = {};
const published = { [A.id]: [], [B.id]: [] };
let publishing = null;
after(async () => {
  if (publishing) await publishing.stop();
  await cleanup(browser, server, vendorA, vendorB);
});

before(async () => {
  assert.ok(Sockudo.available(), "sockudo is not installed at " + SOCKUDO + " (scripts/test installs it)");
  await vendorA.start("tenants-a");
  await vendorB.start("tenants-b");
  const tenant = (t, vendor) => [
    "[[tenants]]", `id = "${t.id}"`, `channels = ["${t.channel}"]`, `publisher_keys = ["${t.key}"]`,
    `vendors = ["${vendor.url}"]`,
  ].join("\n");
  // Vendor heartbeats every 800 ms: a page on a silent vendor notices within 2.4 s. Pages move
  // back to a recovered vendor over 5 s instead of 30 s, to keep the test short.
  server = new Understudy("tenants", {}, [
    "[vendors]\nheartbeat_ms = 800\nmove_back_jitter_ms = 5000",
    tenant(A, vendorA), tenant(B, vendorB),
  ].join("\n"));
  await server.start({ UNDERSTUDY_VENDOR_CA_FILE: vendorA.caFile, UNDERSTUDY_ADMIN_TOKEN: ADMIN });
});

async function routeOf(t) {
  const r = await fetch(server.base + "/v1/route?channel=" + encodeURIComponent(t.channel));
  assert.equal(r.status, 200);
  return r.json();
}

async function routeIs(t, path, ms) {
  await until(t.id + "'s route to say " + path, async () => (await routeOf(t)).route === path, ms, 200);
  return routeOf(t);
}

// A page of one tenant: the understudy client on its channel, with pusher-js for the vendor
// path and the demo's subscriber token (clinic-42.*), recording every event and status.
async function tenantPage(t) {
  const context = await browser.newContext({ viewport: { width: 800, height: 400 } });
  const page = await context.newPage();
  await page.goto(server.base + "/readyz");
  await page.setContent(`<!doctype html><html><body>
    <h1>${t.id}</h1><span id="status">Connecting…</span><div id="freshness"></div>
    <script src="/demo/vendor/pusher.min.js"></script>
    <script src="/v1/client.js"></script>
    <script src="/demo/assets/status.js"></script>
    <script>
      window.record = { events: [], statuses: [] };
      const rt = Understudy.connect({ url: "", token: DemoStatus.token, vendor: { Pusher: window.Pusher } });
      rt.subscribe(${JSON.stringify(t.channel)}, {
        onEvent: (ev) => window.record.events.push({ id: ev.id, seq: ev.seq, epoch: ev.epoch, n: ev.data.n }),
      });
      rt.on("status", (s) => window.record.statuses.push(s.via + ":" + s.state));
      DemoStatus.watch(rt, document.getElementById("status"), document.getElementById("freshness"));
    </script></body></html>`, { waitUntil: "load" });
  return page;
}

// Publishes n = 1, 2, ... to both tenants' channels, one round every 200 ms, until stopped.
async function publishBoth() {
  // Each tenant publishes with its own key, which reaches its own channels only.
  for (const t of [A, B]) t.publishWith = t.key;
  let stopped = false, n = 0;
  const loop = (async () => {
    while (!stopped) {
      n += 1;
      for (const t of [A, B]) {
        const r = await fetch(server.base + "/v1/publish", {
          method: "POST",
          headers: { "Content-Type": "application/json", Authorization: "Bearer " + t.publishWith },
          body: JSON.stringify({ channel: t.channel, name: "tick", data: { n } }),
        });
        assert.equal(r.status, 202, t.id + " publish " + n + ": " + (await r.text()));
        published[t.id].push(n);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return { stop: async () => { stopped = true; await loop; } };
}

async function received(t) {
  return pages[t.id].evaluate(() => window.record.events);
}

// Every event the page got came once and in order, with none missing in between (n counts
// 1, 2, ... per channel), and at least the first `upTo` published have come (all by default).
async function assertExactlyOnce(t, upTo = published[t.id].length) {
  await pages[t.id].waitForFunction((n) => window.record.events.length >= n, upTo, { timeout: 15000, polling: 50 })
    .catch(() => {});
  const events = await received(t);
  const want = Array.from({ length: Math.max(events.length, upTo) }, (_, i) => i + 1);
  assert.deepEqual(events.map((e) => e.n), want, t.id + ": every event once, in order: " + JSON.stringify(events));
  const seqs = events.map((e) => e.seq);
  assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), t.id + ": seqs ascend");
}

describe("two tenants, two vendors", () => {
  it("(1) each tenant's page is live on its own vendor", { timeout: 90000 }, async () => {
    const [ra, rb] = [await routeIs(A, "vendor", 30000), await routeIs(B, "vendor", 30000)];
    assert.deepEqual([ra.tenant, ra.vendor.key, ra.vendor.private], [A.id, vendorA.key, true], JSON.stringify(ra));
    assert.deepEqual([rb.tenant, rb.vendor.key], [B.id, vendorB.key], JSON.stringify(rb));
    browser = await launchBrowser(["--ignore-certificate-errors-spki-list=" + testCertificates().spki]);
    pages[A.id] = await tenantPage(A);
    pages[B.id] = await tenantPage(B);
    for (const t of [A, B]) await waitForBadge(pages[t.id], "Live via vendor", 10000 + 2 * ra.vendor_heartbeat_ms);
    publishing = await publishBoth();
    await until("five events on each page", async () => (await received(A)).length >= 5 && (await received(B)).length >= 5, 10000);
    await screenshot(pages[A.id], "tenants-a-live");
  });

  it("(2) A's vendor hangs: only A's page moves to understudy's own transport", { timeout: 90000 }, async () => {
    const routeB = await routeOf(B);
    const statusesB = (await pages[B.id].evaluate(() => window.record.statuses)).length;
    vendorA.hang();
    await routeIs(A, "self", 30000);
    await waitForBadge(pages[A.id], /^Live via fallback \((WebSocket|SSE)\)$/, 30000);
    const movedAt = published[A.id].length;
    await until("A's page gets events on its fallback", async () => (await received(A)).length >= movedAt + 5, 15000);
    assert.equal(await badge(pages[B.id]), "Live via vendor");
    assert.deepEqual(await routeOf(B), routeB, "B's route never changed");
    const since = (await pages[B.id].evaluate(() => window.record.statuses)).slice(statusesB);
    assert.ok(since.every((s) => s.startsWith("vendor:")), "B's page stayed on its vendor: " + JSON.stringify(since));
    await assertExactlyOnce(A, movedAt);
    await assertExactlyOnce(B, movedAt);

    const dashboard = await openPage(browser, "tenants-dashboard", "http://127.0.0.1:" + server.adminPort + "/admin/");
    await dashboard.waitForSelector("#login[open]", { timeout: 5000 });
    await dashboard.fill("#token-input", ADMIN);
    await dashboard.click("#token-submit");
    await dashboard.waitForFunction(() => {
      const route = (id) => { const el = document.querySelector(`#tenants article[data-tenant="${id}"]`); return el && el.dataset.route; };
      return route("clinic-a") === "self" && route("clinic-b") === "vendor";
    }, null, { timeout: 15000, polling: 100 });
    await screenshot(dashboard, "tenants-dashboard");
    await screenshot(pages[A.id], "tenants-a-hung");
    await screenshot(pages[B.id], "tenants-b-while-a-hung");
  });

  it("(3) A's vendor comes back: A's page returns to it; nothing lost or doubled on either", { timeout: 120000 }, async () => {
    vendorA.resume();
    const route = await routeIs(A, "vendor", 60000);
    await waitForBadge(pages[A.id], "Live via vendor", route.jitter_ms + 3 * route.vendor_heartbeat_ms + 10000);
    const back = published[A.id].length;
    await until("A's page gets events on its vendor again", async () => (await received(A)).length >= back + 5, 15000);
    await publishing.stop();
    publishing = null;
    assert.equal(await badge(pages[B.id]), "Live via vendor");
    await assertExactlyOnce(A);
    await assertExactlyOnce(B);
    for (const t of [A, B]) assert.equal((await received(t)).length, published[t.id].length, t.id + ": all of them");
    await screenshot(pages[A.id], "tenants-a-back");
  });
});
