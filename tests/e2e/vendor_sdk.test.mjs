// Private vendor channels with the official SDKs from npm, unmodified, in Node, against a real
// sockudo: pusher-js 8 with its channel authorization pointed at understudy's
// POST /v1/vendor/auth, and ably 2 with authUrl. For each: a client without an understudy token
// is refused, a token for clinic-42.* gets clinic-42.waiting-room and not clinic-43.waiting-room,
// and an event published to understudy arrives on the authorized subscription.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import Pusher from "pusher-js";
import * as Ably from "ably";
import { Understudy, Sockudo, SOCKUDO, PUBLISHER_KEY, SUBSCRIBER_SECRET, until, cleanup } from "./harness.mjs";

const ALLOWED = "clinic-42.waiting-room";
const REFUSED = "clinic-43.waiting-room";

const b64url = (x) => Buffer.from(typeof x === "string" ? x : JSON.stringify(x)).toString("base64url");
/** An understudy subscriber token (HS256 JWT), as a backend mints it. */
function mint(channels, ttlSecs = 600) {
  const head = b64url({ alg: "HS256", typ: "JWT" }) + "." + b64url({ exp: Math.floor(Date.now() / 1000) + ttlSecs, channels });
  return head + "." + createHmac("sha256", SUBSCRIBER_SECRET).update(head).digest("base64url");
}

async function publish(server, ticket) {
  const r = await fetch(server.base + "/v1/publish", {
    method: "POST",
    headers: { Authorization: "Bearer " + PUBLISHER_KEY, "Content-Type": "application/json" },
    body: JSON.stringify({ channel: ALLOWED, name: "patient.checked_in", data: { ticket } }),
  });
  const text = await r.text();
  assert.equal(r.status, 202, text);
  return JSON.parse(text).seq;
}

/** Starts sockudo and understudy routed to it as `kind`; answers the skip reason or null. */
async function startBoth(vendor, server, url) {
  if (!Sockudo.available()) return "sockudo is not installed at " + SOCKUDO + " (scripts/test installs it)";
  await vendor.start(server.name);
  await server.start({ UNDERSTUDY_VENDOR_URL: url(vendor), UNDERSTUDY_VENDOR_CA_FILE: vendor.caFile });
  await until("the route to the vendor", async () => (await server.route()).route === "vendor", 30000, 100);
  return null;
}

const withTimeout = (p, ms, what) => Promise.race([
  p, new Promise((_, reject) => setTimeout(() => reject(new Error("timed out after " + ms + " ms: " + what)), ms)),
]);

describe("pusher-js 8 against private channels", async () => {
  const vendor = new Sockudo();
  const server = new Understudy("sdk-pusher");
  const clients = [];
  after(async () => { clients.forEach((c) => c.disconnect()); await cleanup(server, vendor); });
  const skip = await startBoth(vendor, server, (v) => v.url);

  function client(channelAuthorization) {
    const p = new Pusher("app-key", {
      wsHost: "127.0.0.1", wsPort: vendor.port, wssPort: vendor.port, forceTLS: false,
      enabledTransports: ["ws"], cluster: "mt1", disableStats: true, channelAuthorization,
    });
    clients.push(p);
    return p;
  }
  // Resolves "ok", or the status pusher-js reports for a refused subscription.
  const subscribe = (p, name) => withTimeout(new Promise((resolve) => {
    const ch = p.subscribe(name);
    ch.bind("pusher:subscription_succeeded", () => resolve({ ok: true, ch }));
    ch.bind("pusher:subscription_error", (e) => resolve({ ok: false, status: e.status }));
  }), 10000, "subscribing " + name);
  const endpoint = () => server.base + "/v1/vendor/auth";

  it("refuses a client without a token, signs only the token's channels, delivers", { skip: skip || false, timeout: 60000 }, async () => {
    const route = await server.route();
    assert.equal(route.vendor.private, true);

    const anonymous = client({ endpoint: endpoint() });
    assert.deepEqual(await subscribe(anonymous, "private-" + ALLOWED), { ok: false, status: 401 });

    const token = mint(["clinic-42.*"]);
    const p = client({ endpoint: endpoint(), headers: { Authorization: "Bearer " + token } });
    assert.deepEqual(await subscribe(p, "private-" + REFUSED), { ok: false, status: 403 });
    const { ok, ch } = await subscribe(p, "private-" + ALLOWED);
    assert.ok(ok);
    const got = new Promise((resolve) => ch.bind("understudy.event", resolve));
    const seq = await publish(server, "P-1");
    const event = await withTimeout(got, 5000, "the event on the private channel");
    assert.deepEqual([event.channel, event.seq, event.data], [ALLOWED, seq, { ticket: "P-1" }]);
  });

  it("takes the token as a parameter as well", { skip: skip || false, timeout: 30000 }, async () => {
    const p = client({ endpoint: endpoint(), params: { token: mint(["clinic-42.*"]) } });
    assert.equal((await subscribe(p, "private-" + ALLOWED)).ok, true);
  });
});

describe("ably 2 with authUrl", async () => {
  const vendor = new Sockudo();
  const server = new Understudy("sdk-ably");
  const clients = [];
  after(async () => { clients.forEach((c) => c.close()); await cleanup(server, vendor); });
  const skip = await startBoth(vendor, server, (v) => v.ablyUrl);

  function client(auth) {
    const c = new Ably.Realtime({
      endpoint: "127.0.0.1", port: vendor.port, tls: false, useBinaryProtocol: false,
      authUrl: server.base + "/v1/vendor/auth", ...auth, logLevel: 0,
    });
    clients.push(c);
    return c;
  }
  // Resolves the connection's first settled state: "connected", or the error of a failure.
  const settled = (c) => withTimeout(new Promise((resolve) => {
    c.connection.once("connected", () => resolve({ state: "connected" }));
    c.connection.once("failed", (s) => resolve({ state: "failed", code: s.reason && s.reason.code, status: s.reason && s.reason.statusCode }));
    c.connection.once("disconnected", (s) => resolve({ state: "disconnected", code: s.reason && s.reason.code, status: s.reason && s.reason.statusCode }));
  }), 15000, "the connection to settle");

  it("refuses a client without a token, grants only the token's channels, delivers", { skip: skip || false, timeout: 60000 }, async () => {
    const anonymous = await settled(client({}));
    assert.notEqual(anonymous.state, "connected");
    assert.equal(anonymous.status, 401, JSON.stringify(anonymous));

    const c = client({ authHeaders: { Authorization: "Bearer " + mint(["clinic-42.*"]) } });
    assert.deepEqual(await settled(c), { state: "connected" });
    await assert.rejects(c.channels.get(REFUSED).attach(), (e) => e.code === 40160);
    const ch = c.channels.get(ALLOWED);
    const got = new Promise((resolve) => ch.subscribe((m) => resolve(m)));
    await ch.attach();
    const seq = await publish(server, "A-1");
    const m = await withTimeout(got, 5000, "the event on the channel");
    const event = JSON.parse(m.data);
    assert.equal(m.name, "patient.checked_in");
    assert.deepEqual([event.channel, event.seq, event.data], [ALLOWED, seq, { ticket: "A-1" }]);
  });

  it("takes the token as a POST form parameter as well", { skip: skip || false, timeout: 30000 }, async () => {
    const c = client({ authMethod: "POST", authParams: { token: mint(["clinic-42.*"]) } });
    assert.deepEqual(await settled(c), { state: "connected" });
    await c.channels.get(ALLOWED).attach();
  });
});
