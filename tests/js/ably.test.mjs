// The built-in Ably adapter against fakes: the token exchange, the JSON realtime protocol, the
// heartbeat watchdog and exactly-once handover, without any SDK on the page.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ev, start, ROUTE, ABLY_INFO, TOKEN_REQUEST } from "./fakes.mjs";

const ABLY_ROUTE = { ...ROUTE, route: "vendor", vendor: ABLY_INFO };
const NO_SDK = { vendor: undefined };

// On the Ably path for channel "a" at `since`, caught up, heartbeat heard.
async function onAbly(t, since) {
  const h = start(t, { route: ABLY_ROUTE, opts: NO_SDK });
  h.sub("a", since);
  const a = await h.net.ablyToken(h.flush);
  a.connected();
  a.heartbeat();
  a.attached("a");
  await h.flush();
  h.net.last("/v1/channels/a/events").respond(200, { channel: "a", epoch: "E", events: [], next: since, reset: false });
  await h.flush();
  return { ...h, a };
}

test("ably: the TokenRequest is exchanged at the vendor for a token that opens the socket; no SDK needed", async (t) => {
  const { net, log, sub, flush, statuses } = start(t, { route: ABLY_ROUTE, opts: NO_SDK });
  sub("clinic:7", { epoch: "E", seq: 2 });
  await flush();
  const auth = net.last("/v1/vendor/auth");
  assert.equal(auth.method, "POST");
  assert.equal(auth.headers.Authorization, "Bearer tok");
  assert.deepEqual(auth.body, {});
  auth.respond(200, TOKEN_REQUEST);
  await flush();
  const rt = net.last("/keys/app-key/requestToken");
  assert.equal(rt.url, "http://127.0.0.1:6001/keys/app-key/requestToken");
  assert.equal(rt.method, "POST");
  assert.deepEqual(rt.body, TOKEN_REQUEST);
  assert.deepEqual(rt.headers, { "Content-Type": "application/json" }, "the page's understudy token never goes to the vendor");
  rt.respond(200, { token: "tk/1", keyName: "app-key", issued: 1, expires: 2 });
  await flush();
  const a = net.ably();
  assert.equal(a.url, "ws://127.0.0.1:6001/?access_token=tk%2F1&format=json&v=6&heartbeats=true&echo=false");
  assert.deepEqual(a.sent, [], "nothing is sent before CONNECTED");
  a.connected();
  assert.deepEqual(a.attaches(), ["understudy.heartbeat", "clinic:7"]);
  a.attached("understudy.heartbeat");
  a.attached("clinic:7"); // the vendor cannot replay: catch up over HTTP
  await flush();
  const fill = net.last("/v1/channels/clinic:7/events");
  assert.deepEqual([fill.query.get("epoch"), fill.query.get("since")], ["E", "2"]);
  fill.respond(200, { channel: "clinic:7", epoch: "E", events: [ev("clinic:7", "E", 3)], next: { epoch: "E", seq: 3 }, reset: false });
  await flush();
  a.heartbeat();
  a.event(ev("clinic:7", "E", 3));
  a.event(ev("clinic:7", "E", 4));
  a.publish("other", "n", JSON.stringify(ev("other", "E", 1))); // a channel nobody subscribed
  assert.deepEqual(log, ["E:3", "E:4"]);
  assert.deepEqual(statuses, ["offline/vendor", "live/vendor"]);
  assert.equal(net.sockets.length, 1, "no WebSocket to understudy");
  assert.equal(net.pending().length, 0);
});

test("ably over TLS: https for the token, wss for the socket", async (t) => {
  const { net, sub, flush } = start(t, { route: { ...ABLY_ROUTE, vendor: { ...ABLY_INFO, tls: true, host: "main.realtime.ably.net", port: 443 } }, opts: NO_SDK });
  sub("a");
  await flush();
  net.last("/v1/vendor/auth").respond(200, TOKEN_REQUEST);
  await flush();
  assert.equal(net.last("/keys/app-key/requestToken").url, "https://main.realtime.ably.net:443/keys/app-key/requestToken");
  net.last("/keys/app-key/requestToken").respond(200, { token: "t" });
  await flush();
  assert.match(net.ably().url, /^wss:\/\/main\.realtime\.ably\.net:443\/\?access_token=t&/);
});

test("ably: overlapping ws and vendor during a climb: every event once, in order", async (t) => {
  const { net, log, sub, advance, flush, statuses } = start(t, { route: { ...ROUTE, vendor: ABLY_INFO }, opts: NO_SDK });
  const ch = "clinic:7";
  sub(ch, { epoch: "E", seq: 0 });
  await flush();
  const ws = net.ws();
  ws.open();
  ws.recv(ev(ch, "E", 1));
  ws.recv(ev(ch, "E", 2));
  ws.recv({ ...ABLY_ROUTE, jitter_ms: 5000 });
  await advance(2500);
  const a = await net.ablyToken(flush);
  a.connected();
  a.attached(ch);
  await flush();
  const r = net.last("/v1/channels/clinic:7/events");
  assert.equal(r.query.get("since"), "2");
  r.respond(200, { channel: ch, epoch: "E", events: [], next: { epoch: "E", seq: 2 }, reset: false });
  await flush();
  a.event(ev(ch, "E", 3));
  ws.recv(ev(ch, "E", 3));
  a.event(ev(ch, "E", 5));
  ws.recv(ev(ch, "E", 4));
  ws.recv(ev(ch, "E", 5));
  a.event(ev(ch, "E", 4));
  assert.ok(!ws.closed, "the vendor is not up before its first heartbeat");
  a.heartbeat();
  assert.ok(ws.closed, "the vendor proved healthy and replaced the WebSocket");
  a.event(ev(ch, "E", 6));
  ws.recv(ev(ch, "E", 7)); // the closed path is no longer listened to
  assert.deepEqual(log, ["E:1", "E:2", "E:3", "E:4", "E:5", "E:6"]);
  assert.deepEqual(statuses, ["offline/ws", "live/ws", "degraded/ws", "live/vendor"]);
  assert.equal(net.pending().length, 0);
});

test("ably silent past three heartbeat intervals: falls to ws and resumes there", async (t) => {
  const { net, log, advance, a, statuses } = await onAbly(t, { epoch: "E", seq: 0 });
  a.event(ev("a", "E", 1));
  for (let i = 0; i < 4; i++) { await advance(5000); a.heartbeat(); }
  // Ably's own HEARTBEAT proves the socket, not delivery: it does not keep the path alive.
  for (let i = 0; i < 3; i++) { await advance(5000); a.recv({ action: 0 }); }
  assert.equal(net.sockets.length, 1, "three intervals is not yet silence");
  await advance(1000);
  assert.ok(a.closed);
  await advance(300);
  const ws = net.ws();
  ws.open();
  assert.deepEqual(ws.subs(), [{ type: "subscribe", channel: "a", since: { epoch: "E", seq: 1 } }]);
  ws.recv(ev("a", "E", 1));
  ws.recv(ev("a", "E", 2));
  assert.deepEqual(log, ["E:1", "E:2"]);
  assert.deepEqual(statuses, ["offline/vendor", "live/vendor", "degraded/ws", "degraded/ws"]);
});

test("ably dropped after a stable spell: reconnects with a fresh token and catches up once", async (t) => {
  const { net, log, advance, flush, a } = await onAbly(t, { epoch: "E", seq: 0 });
  a.event(ev("a", "E", 1));
  for (let i = 0; i < 3; i++) { await advance(4000); a.heartbeat(); }
  a.recv({ action: 6, error: { code: 40142, statusCode: 401, message: "Token expired" } }); // DISCONNECTED
  assert.ok(a.closed);
  await advance(250);
  assert.equal(net.requests.filter((r) => r.path === "/v1/vendor/auth").length, 2);
  const b = await net.ablyToken(flush, "tk-2");
  assert.notEqual(b, a);
  assert.match(b.url, /access_token=tk-2&/);
  b.connected();
  b.heartbeat();
  b.attached("a");
  await flush();
  const fill = net.last("/v1/channels/a/events");
  assert.equal(fill.query.get("since"), "1");
  fill.respond(200, { channel: "a", epoch: "E", events: [ev("a", "E", 2)], next: { epoch: "E", seq: 2 }, reset: false });
  await flush();
  b.event(ev("a", "E", 2));
  b.event(ev("a", "E", 3));
  assert.deepEqual(log, ["E:1", "E:2", "E:3"]);
  assert.equal(net.ws(), b, "no WebSocket to understudy was needed");
});

test("ably: the vendor's AUTH request renews the token in-band, on the same socket", async (t) => {
  const { net, log, flush, a } = await onAbly(t, { epoch: "E", seq: 0 });
  a.recv({ action: 17 });
  const b = await net.ablyToken(flush, "tk-2");
  assert.equal(b, a, "no new socket");
  assert.deepEqual(a.sent.pop(), { action: 17, auth: { accessToken: "tk-2" } });
  assert.ok(!a.closed);
  a.event(ev("a", "E", 1));
  assert.deepEqual(log, ["E:1"]);
});

test("ably: a closed socket before it proved itself moves down", async (t) => {
  const { net, sub, advance, flush } = start(t, { route: ABLY_ROUTE, opts: NO_SDK });
  sub("a");
  const a = await net.ablyToken(flush);
  a.drop();
  await advance(300);
  assert.equal(net.sockets.length, 2);
  assert.equal(net.ws().url, "ws://us.test/v1/ws?token=tok");
});

for (const [what, refuse] of [
  ["POST /v1/vendor/auth refuses the token", async (net) => {
    net.last("/v1/vendor/auth").respond(403, { error: { code: "channel_forbidden", message: "no" } });
  }],
  ["the vendor refuses the TokenRequest", async (net, flush) => {
    net.last("/v1/vendor/auth").respond(200, TOKEN_REQUEST);
    await flush();
    net.last("/keys/app-key/requestToken").respond(401, { error: { code: 40101, statusCode: 401, message: "bad mac" } });
  }],
]) {
  test(`ably: ${what}: the client moves to ws`, async (t) => {
    const { rt, net, sub, flush, advance } = start(t, { route: ABLY_ROUTE, opts: NO_SDK });
    const errors = [];
    rt.on("error", (e) => errors.push(e.code));
    sub("a");
    await flush();
    await refuse(net, flush);
    await flush();
    assert.equal(net.ably(), undefined);
    await advance(300);
    assert.equal(net.ws().url, "ws://us.test/v1/ws?token=tok");
    // Only understudy's own refusals are the page's token errors.
    assert.deepEqual(errors, what.startsWith("POST") ? ["channel_forbidden"] : []);
  });
}

for (const [what, refusal] of [
  ["a channel ERROR", { action: 9, channel: "a", error: { code: 40160, statusCode: 401 } }],
  ["a DETACHED with an error", { action: 13, channel: "a", error: { code: 40160, statusCode: 401 } }],
  ["a connection ERROR", { action: 9, error: { code: 40101, statusCode: 401 } }],
]) {
  test(`ably: ${what} moves down to ws`, async (t) => {
    const { net, sub, flush, advance } = start(t, { route: ABLY_ROUTE, opts: NO_SDK });
    sub("a");
    const a = await net.ablyToken(flush);
    a.connected();
    a.heartbeat();
    a.recv(refusal);
    assert.ok(a.closed);
    await advance(300);
    assert.equal(net.ws().url, "ws://us.test/v1/ws?token=tok");
  });
}

test("ably: a DETACHED without error re-attaches; unsubscribing detaches; others' errors are ignored", async (t) => {
  const { rt, net, flush } = start(t, { route: ABLY_ROUTE, opts: NO_SDK });
  const s = rt.subscribe("a", {});
  rt.subscribe("b", {});
  const a = await net.ablyToken(flush);
  a.connected();
  a.heartbeat();
  a.recv({ action: 13, channel: "a" });
  a.recv({ action: 9, channel: "zzz", error: { code: 40160 } });
  assert.deepEqual(a.attaches(), ["understudy.heartbeat", "a", "b", "a"]);
  s.unsubscribe();
  assert.deepEqual(a.sent.pop(), { action: 12, channel: "a" });
  assert.ok(!a.closed);
});

test("vendor: false keeps a page off the built-in Ably adapter", async (t) => {
  const { net, sub, flush } = start(t, { route: ABLY_ROUTE, opts: { vendor: false } });
  sub("a");
  await flush();
  assert.equal(net.requests.filter((r) => r.path === "/v1/vendor/auth").length, 0);
  assert.equal(net.ws().url, "ws://us.test/v1/ws?token=tok");
});
