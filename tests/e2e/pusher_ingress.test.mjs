// The Pusher HTTP API ingress with the official server SDKs, unmodified: npm `pusher` 5.3 (in
// this process) and PyPI `pusher` 3.3 (tests/py/pusher_ingress.py, in .venv-test). Their
// `trigger` and `triggerBatch` through understudy arrive on understudy's WebSocket, SSE and poll
// in order, nothing lost or doubled, and reach the vendor (sockudo behind TLS) as published,
// seen by pusher-js subscribed to sockudo; a wrong secret and an old timestamp are refused with
// Pusher's 401, and the server still serves.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { join } from "node:path";
import Pusher from "pusher";
import PusherJs from "pusher-js";
import WebSocket from "ws";
import { Understudy, Sockudo, SOCKUDO, ROOT, until, cleanup } from "./harness.mjs";

const APP = { appId: "4242", key: "orders-app-key", secret: "orders-app-secret-0123456789" };
const PYTHON = process.env.UNDERSTUDY_PYTHON || join(ROOT, ".venv-test", "bin", "python");

const withTimeout = (p, ms, what) => Promise.race([
  p, new Promise((_, reject) => setTimeout(() => reject(new Error("timed out after " + ms + " ms: " + what)), ms)),
]);

/** Event messages of understudy's WebSocket on `channel`, as they come. */
async function understudyWs(server, channel) {
  const ws = new WebSocket(server.base.replace("http://", "ws://") + "/v1/ws?channel=" + channel);
  const events = [];
  const subscribed = new Promise((resolve) => ws.on("message", (raw) => {
    const m = JSON.parse(raw.toString());
    if (m.type === "subscribed") resolve();
    if (m.type === "event") events.push(m);
  }));
  await withTimeout(subscribed, 10000, "the WebSocket subscription");
  return { events, close: () => ws.close() };
}

/** Event messages of understudy's SSE stream on `channel`, as they come. */
async function understudySse(server, channel) {
  const controller = new AbortController();
  const r = await fetch(server.base + "/v1/sse?channel=" + channel, { signal: controller.signal });
  assert.equal(r.status, 200);
  const events = [];
  let buf = "";
  let resolveSubscribed;
  const subscribed = new Promise((resolve) => { resolveSubscribed = resolve; });
  (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of r.body) {
        buf += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          if (block.split("\n").some((l) => l.startsWith("event: "))) continue;
          const data = block.split("\n").find((l) => l.startsWith("data: "));
          if (!data) continue;
          const m = JSON.parse(data.slice(6));
          if (m.type === "subscribed") resolveSubscribed();
          if (m.type === "event") events.push(m);
        }
      }
    } catch (e) { /* aborted at the end of the test */ }
  })();
  await withTimeout(subscribed, 10000, "the SSE subscription");
  return { events, close: () => controller.abort() };
}

async function polled(server, channel) {
  const r = await fetch(server.base + "/v1/channels/" + channel + "/events?since=0");
  assert.equal(r.status, 200);
  return (await r.json()).events;
}

/** pusher-js subscribed to `channel` on sockudo itself: what the vendor's pages receive. */
async function onVendor(vendor, channel) {
  const client = new PusherJs("app-key", {
    wsHost: "127.0.0.1", wsPort: vendor.port, wssPort: vendor.port, forceTLS: false,
    enabledTransports: ["ws"], cluster: "mt1", disableStats: true,
  });
  const events = [];
  const ch = client.subscribe(channel);
  await withTimeout(new Promise((resolve) => ch.bind("pusher:subscription_succeeded", resolve)), 10000,
    "the vendor subscription");
  ch.bind_global((name, data) => { if (!name.startsWith("pusher")) events.push([name, data]); });
  return { events, close: () => client.disconnect() };
}

const seqNameData = (events) => events.map((e) => [e.seq, e.name, e.data]);

/** Waits until every view holds `want` exactly: the same events, in order, none twice. */
async function assertArrived(views, want, what) {
  for (const [name, view] of Object.entries(views)) {
    await until(what + " on " + name, async () => (await view()).length >= want.length, 10000, 20)
      .catch(() => {});
    assert.deepEqual(await view(), want, what + " on " + name);
  }
}

async function start(vendor, server) {
  if (!Sockudo.available()) return "sockudo is not installed at " + SOCKUDO + " (scripts/test installs it)";
  await vendor.start(server.name);
  await server.start({ UNDERSTUDY_VENDOR_URL: vendor.url, UNDERSTUDY_VENDOR_CA_FILE: vendor.caFile });
  await until("the route to the vendor", async () => (await server.route()).route === "vendor", 30000, 100);
  return null;
}

const APPS_TOML = [
  "[auth]", 'subscribe = "none"',
  "[[apps]]", 'id = "' + APP.appId + '"', 'key = "' + APP.key + '"', 'secret = "' + APP.secret + '"',
].join("\n");

describe("npm pusher 5 through understudy", async () => {
  const vendor = new Sockudo();
  const server = new Understudy("pusher-ingress-node", {}, APPS_TOML);
  const open = [];
  after(async () => { open.forEach((o) => o.close()); await cleanup(server, vendor); });
  const skip = await start(vendor, server);
  const sdk = (options = {}) => new Pusher({ ...APP, host: "127.0.0.1", port: String(server.port), useTLS: false, timeout: 5000, ...options });

  it("trigger and triggerBatch arrive everywhere in order; refusals are Pusher's 401", { skip: skip || false, timeout: 60000 }, async () => {
    const channel = "orders-node";
    const ws = await understudyWs(server, channel);
    const sse = await understudySse(server, channel);
    const vendorPage = await onVendor(vendor, channel);
    open.push(ws, sse, vendorPage);

    const pusher = sdk();
    let r = await pusher.trigger(channel, "order.paid", { total: 1 });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), {});
    r = await pusher.trigger([channel, channel + "-b"], "order.paid", "two");
    assert.equal(r.status, 200);
    r = await pusher.triggerBatch([
      { channel, name: "order.shipped", data: { n: 3 } },
      { channel, name: "order.shipped", data: "four" },
    ]);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), {});

    const refused = async (client) => {
      const e = await client.trigger(channel, "e", "x").then(() => null, (e) => e);
      assert.ok(e, "refused");
      assert.ok(!e.body.includes(APP.secret), e.body);
      return [e.status, JSON.parse(e.body).error.code];
    };
    assert.deepEqual(await refused(sdk({ secret: "not-the-app-secret-0123456789" })), [401, "invalid_signature"]);
    // A publisher whose clock is 700 s behind: the SDK signs Date.now().
    const realNow = Date.now;
    Date.now = () => realNow() - 700 * 1000;
    let old;
    try { old = await refused(pusher); } finally { Date.now = realNow; }
    assert.deepEqual(old, [401, "timestamp_expired"]);

    r = await pusher.trigger(channel, "order.closed", "five");
    assert.equal(r.status, 200);

    const want = [
      [1, "order.paid", '{"total":1}'],
      [2, "order.paid", "two"],
      [3, "order.shipped", '{"n":3}'],
      [4, "order.shipped", "four"],
      [5, "order.closed", "five"],
    ];
    await assertArrived({
      websocket: async () => seqNameData(ws.events),
      sse: async () => seqNameData(sse.events),
      poll: async () => seqNameData(await polled(server, channel)),
    }, want, "the SDK's events");
    assert.deepEqual(seqNameData(await polled(server, channel + "-b")), [[1, "order.paid", "two"]]);
    // The vendor got them as published: pusher-js parses JSON data as it would from Pusher.
    await assertArrived({ vendor: async () => vendorPage.events }, [
      ["order.paid", { total: 1 }],
      ["order.paid", "two"],
      ["order.shipped", { n: 3 }],
      ["order.shipped", "four"],
      ["order.closed", "five"],
    ], "the SDK's events");
  });
});

describe("PyPI pusher 3 through understudy", async () => {
  const vendor = new Sockudo();
  const server = new Understudy("pusher-ingress-python", {}, APPS_TOML);
  const open = [];
  after(async () => { open.forEach((o) => o.close()); await cleanup(server, vendor); });
  const noPython = existsSync(PYTHON) ? null : PYTHON + " is missing: python3 -m venv .venv-test && .venv-test/bin/pip install -r tests/py/requirements.txt (scripts/test does)";
  const skip = noPython || await start(vendor, server);

  it("trigger and trigger_batch arrive everywhere in order; refusals are Pusher's 401", { skip: skip || false, timeout: 60000 }, async () => {
    const channel = "orders-py";
    const ws = await understudyWs(server, channel);
    const sse = await understudySse(server, channel);
    const vendorPage = await onVendor(vendor, channel);
    open.push(ws, sse, vendorPage);

    const child = spawn(PYTHON, [join(ROOT, "tests", "py", "pusher_ingress.py")], {
      env: {
        PATH: process.env.PATH, UNDERSTUDY_HOST: "127.0.0.1", UNDERSTUDY_PORT: String(server.port),
        PUSHER_APP_ID: APP.appId, PUSHER_KEY: APP.key, PUSHER_SECRET: APP.secret, PUSHER_CHANNEL: channel,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    const killer = setTimeout(() => child.kill("SIGKILL"), 30000);
    const [code] = await once(child, "exit");
    clearTimeout(killer);
    assert.equal(code, 0, stderr);
    const out = JSON.parse(stdout);
    for (const call of ["trigger", "trigger_two", "batch", "after"]) assert.deepEqual(out[call], {}, call);
    for (const [call, code] of [["wrong_secret", "invalid_signature"], ["old_timestamp", "timestamp_expired"]]) {
      assert.equal(out[call].error, "PusherBadAuth", JSON.stringify(out[call]));
      assert.match(out[call].body, new RegExp('"code":"' + code + '"'), call);
      assert.ok(!out[call].body.includes(APP.secret), call);
    }

    // json.dumps writes ", " and ": ": the data is kept exactly as the SDK encoded it.
    const want = [
      [1, "order.paid", '{"total": 1}'],
      [2, "order.paid", "two"],
      [3, "order.shipped", '{"n": 3}'],
      [4, "order.shipped", "four"],
      [5, "order.closed", "five"],
    ];
    await assertArrived({
      websocket: async () => seqNameData(ws.events),
      sse: async () => seqNameData(sse.events),
      poll: async () => seqNameData(await polled(server, channel)),
    }, want, "the SDK's events");
    assert.deepEqual(seqNameData(await polled(server, channel + "-b")), [[1, "order.paid", "two"]]);
    await assertArrived({ vendor: async () => vendorPage.events }, [
      ["order.paid", { total: 1 }],
      ["order.paid", "two"],
      ["order.shipped", { n: 3 }],
      ["order.shipped", "four"],
      ["order.closed", "five"],
    ], "the SDK's events");
  });
});
