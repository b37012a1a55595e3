import { test } from "node:test";
import assert from "node:assert/strict";
import { ev, start, ROUTE, PUSHER_INFO } from "./fakes.mjs";

const CH = "clinic-42.waiting-room";
const VENDOR_ROUTE = { ...ROUTE, route: "vendor", vendor: PUSHER_INFO };

test("ws: subscribes from the held position and resumes from it after a server restart", async (t) => {
  const { net, log, sub, advance, flush, statuses } = start(t);
  sub(CH, { epoch: "E", seq: 5 });
  await flush();
  const ws = net.ws();
  assert.equal(ws.url, "ws://us.test/v1/ws?token=tok");
  ws.open();
  assert.deepEqual(ws.subs(), [{ type: "subscribe", channel: CH, since: { epoch: "E", seq: 5 } }]);
  ws.recv({ type: "subscribed", channel: CH, epoch: "E", seq: 7 });
  ws.recv(ev(CH, "E", 6));
  ws.recv(ev(CH, "E", 7));
  ws.recv({ type: "reconnect", reason: "shutdown", retry_ms: 300 });
  ws.drop(1012);
  await advance(250);
  assert.equal(net.sockets.length, 1, "waits retry_ms");
  await advance(100);
  assert.equal(net.sockets.length, 2);
  const ws2 = net.ws();
  ws2.open();
  assert.deepEqual(ws2.subs(), [{ type: "subscribe", channel: CH, since: { epoch: "E", seq: 7 } }]);
  ws2.recv({ type: "subscribed", channel: CH, epoch: "E", seq: 8 });
  ws2.recv(ev(CH, "E", 7));
  ws2.recv(ev(CH, "E", 8));
  assert.deepEqual(log, ["E:6", "E:7", "E:8"]);
  assert.deepEqual(statuses, ["offline/ws", "live/ws", "degraded/ws", "live/ws"]);
});

test("ws time-out: falls to SSE with a cursor of all positions; a stable SSE that drops resumes", async (t) => {
  const { net, log, sub, advance, flush, statuses, rt } = start(t);
  sub("a", { epoch: "E", seq: 5 });
  sub("b");
  await flush();
  assert.equal(net.sockets.length, 1);
  await advance(10000);
  assert.equal(net.sources.length, 0);
  assert.ok(net.ws().closed, "the silent WebSocket is closed");
  await advance(300); // back-off: full jitter under 500 ms (random 0.5 -> 250 ms)
  assert.equal(net.sources.length, 1);
  const es = net.es();
  assert.deepEqual([...es.query().getAll("channel")], ["a", "b"]);
  assert.equal(es.query().get("cursor"), "a~E~5");
  assert.equal(es.query().get("token"), "tok");
  es.open();
  es.recv({ type: "subscribed", channel: "a", epoch: "E", seq: 6 });
  es.recv({ type: "subscribed", channel: "b", epoch: "F", seq: 2 });
  es.recv(ev("a", "E", 6));
  es.recv(ev("b", "F", 3));
  for (let i = 0; i < 2; i++) { await advance(6000); es.heartbeat(); }
  es.error();
  await advance(300);
  assert.equal(net.sources.length, 2, "same step again: it had been up long enough");
  assert.equal(net.es().query().get("cursor"), "a~E~6,b~F~3");
  assert.deepEqual(log, ["E:6", "F:3"]);
  // SSE up (below the route's ws), then dropped: the same state and step, `connected` changes.
  assert.deepEqual(statuses, ["offline/ws", "offline/sse", "degraded/sse", "degraded/sse"]);
  assert.equal(rt.status().connected, false);
});

test("poll: first request catches up at once, then long polls; two failed long polls switch to interval polling", async (t) => {
  const { net, log, sub, advance, flush, statuses } = start(t, { route: { ...ROUTE, route: "poll" } });
  sub(CH, { epoch: "E", seq: 5 });
  await flush();
  const answer = (events, seq) => ({
    results: [{ channel: CH, epoch: "E", events, next: { epoch: "E", seq }, reset: false, poll_interval_ms: 2000 }],
    poll_interval_ms: 2000,
  });
  let r = net.last("/v1/poll");
  assert.equal(r.method, "POST");
  assert.equal(r.headers.Authorization, "Bearer tok");
  assert.deepEqual(r.body, { channels: [{ channel: CH, epoch: "E", since: 5 }], limit: 1000, wait_ms: 0 });
  r.respond(200, answer([ev(CH, "E", 6)], 6));
  await flush();
  r = net.last("/v1/poll");
  assert.deepEqual(r.body.channels, [{ channel: CH, epoch: "E", since: 6 }]);
  assert.equal(r.body.wait_ms, 25000);
  await advance(3000);
  r.respond(200, answer([ev(CH, "E", 6), ev(CH, "E", 7)], 7));
  await flush();
  r = net.last("/v1/poll");
  assert.equal(r.body.channels[0].since, 7);
  r.fail();
  await flush();
  await advance(500); // back-off: random 0.5 * cap 1000
  net.last("/v1/poll").fail();
  await flush();
  await advance(1000); // random 0.5 * cap 2000; two long polls failed: interval polling from now
  r = net.last("/v1/poll");
  r.respond(200, answer([ev(CH, "E", 8)], 8));
  await flush();
  await advance(1950);
  assert.equal(net.requests.filter((x) => x.path === "/v1/poll").length, 5, "interval polling waits poll_interval_ms");
  await advance(50);
  const polls = net.requests.filter((x) => x.path === "/v1/poll");
  assert.deepEqual(polls.map((x) => x.body.wait_ms), [0, 25000, 25000, 25000, 0, 0]);
  assert.deepEqual(polls.map((x) => x.at - polls[0].at), [0, 0, 3000, 3500, 4500, 6500]);
  assert.deepEqual(log, ["E:6", "E:7", "E:8"]);
  assert.deepEqual(statuses, ["offline/poll", "polling/poll"]);
});

test("overlapping ws and vendor during a climb: every event once, in order", async (t) => {
  const { net, log, sub, advance, flush, statuses } = start(t, { route: { ...ROUTE, vendor: PUSHER_INFO } });
  const ch = "clinic:7";
  sub(ch, { epoch: "E", seq: 0 });
  await flush();
  const ws = net.ws();
  ws.open();
  ws.recv(ev(ch, "E", 1));
  ws.recv(ev(ch, "E", 2));
  ws.recv({ ...VENDOR_ROUTE, jitter_ms: 5000 });
  await advance(2450);
  assert.equal(net.pushers.length, 0, "the climb waits random * jitter_ms");
  await advance(50);
  const p = net.pusher();
  assert.equal(p.key, "app-key");
  assert.deepEqual(p.options, {
    wsHost: "127.0.0.1", wsPort: 6001, wssPort: 6001, forceTLS: false, enabledTransports: ["ws"],
    cluster: "mt1", disableStats: true,
  });
  assert.deepEqual([...p.channels.keys()].sort(), ["clinic;7", "understudy.heartbeat"]);
  p.ready(ch); // the vendor cannot replay: catch up over HTTP
  await flush();
  const r = net.last("/v1/channels/clinic:7/events");
  assert.equal(r.query.get("epoch"), "E");
  assert.equal(r.query.get("since"), "2");
  r.respond(200, { channel: ch, epoch: "E", events: [], next: { epoch: "E", seq: 2 }, reset: false });
  await flush();
  p.event(ev(ch, "E", 3));
  ws.recv(ev(ch, "E", 3));
  p.event(ev(ch, "E", 5));
  ws.recv(ev(ch, "E", 4));
  ws.recv(ev(ch, "E", 5));
  p.event(ev(ch, "E", 4));
  p.heartbeat();
  assert.ok(ws.closed, "the vendor proved healthy and replaced the WebSocket");
  p.event(ev(ch, "E", 6));
  ws.recv(ev(ch, "E", 7)); // the closed path is no longer listened to
  assert.deepEqual(log, ["E:1", "E:2", "E:3", "E:4", "E:5", "E:6"]);
  assert.deepEqual(statuses, ["offline/ws", "live/ws", "degraded/ws", "live/vendor"]);
  assert.equal(net.pending().length, 0);
});

async function onVendor(t, since) {
  const h = start(t, { route: VENDOR_ROUTE });
  h.sub("a", since);
  await h.flush();
  const p = h.net.pusher();
  p.heartbeat();
  p.ready("a");
  await h.flush();
  h.net.last("/v1/channels/a/events").respond(200, { channel: "a", epoch: "E", events: [], next: since, reset: false });
  await h.flush();
  return { ...h, p };
}

test("gap: held back briefly, then filled by a poll request", async (t) => {
  const { net, log, advance, p } = await onVendor(t, { epoch: "E", seq: 1 });
  p.event(ev("a", "E", 2));
  p.event(ev("a", "E", 5));
  await advance(950);
  assert.equal(net.pending().length, 0, "waits gapWaitMs for another path to fill it");
  await advance(100);
  const r = net.last("/v1/channels/a/events");
  assert.deepEqual([r.query.get("epoch"), r.query.get("since"), r.query.get("limit")], ["E", "2", "1000"]);
  assert.deepEqual(log, ["E:2"]);
  r.respond(200, { channel: "a", epoch: "E", events: [ev("a", "E", 3), ev("a", "E", 4)], next: { epoch: "E", seq: 4 }, reset: false });
  await advance(50);
  p.event(ev("a", "E", 6));
  assert.deepEqual(log, ["E:2", "E:3", "E:4", "E:5", "E:6"]);
});

test("gap filled by the other path before the poll: no request", async (t) => {
  const { net, log, advance, p } = await onVendor(t, { epoch: "E", seq: 1 });
  const before = net.requests.length;
  p.event(ev("a", "E", 3));
  p.event(ev("a", "E", 2));
  await advance(2000);
  assert.equal(net.requests.length, before);
  assert.deepEqual(log, ["E:2", "E:3"]);
});

test("gap that history no longer holds: one onReset, then the stream continues", async (t) => {
  const { net, log, advance, p } = await onVendor(t, { epoch: "E", seq: 1 });
  p.event(ev("a", "E", 2));
  p.event(ev("a", "E", 9));
  await advance(1050);
  net.last("/v1/channels/a/events").respond(200, { channel: "a", epoch: "E", events: [], next: { epoch: "E", seq: 8 }, reset: true });
  await advance(50);
  p.event(ev("a", "E", 9));
  p.event(ev("a", "E", 10));
  assert.deepEqual(log, ["E:2", "reset:E:8:reset", "E:9", "E:10"]);
});

test("gap whose poll fails: skip to the held events with one onReset", async (t) => {
  const { net, log, advance, p } = await onVendor(t, { epoch: "E", seq: 1 });
  p.event(ev("a", "E", 4));
  p.event(ev("a", "E", 5));
  await advance(1050);
  net.last("/v1/channels/a/events").fail();
  await advance(50);
  p.event(ev("a", "E", 6));
  assert.deepEqual(log, ["reset:E:3:gap", "E:4", "E:5", "E:6"]);
});

test("epoch change seen on two paths: onReset exactly once, then in order", async (t) => {
  const { net, log, sub, advance, flush } = start(t, { route: { ...ROUTE, vendor: PUSHER_INFO } });
  sub("a", { epoch: "E", seq: 3 });
  await flush();
  const ws = net.ws();
  ws.open();
  ws.recv(ev("a", "E", 4));
  ws.recv({ ...VENDOR_ROUTE });
  await advance(2500);
  const p = net.pusher();
  // understudy restarted: the WebSocket reconnects with its old position while the vendor
  // already carries the new epoch
  ws.recv({ type: "reconnect", reason: "shutdown", retry_ms: 0 });
  ws.drop(1012);
  await advance(50);
  const ws2 = net.ws();
  ws2.open();
  assert.deepEqual(ws2.subs()[0].since, { epoch: "E", seq: 4 });
  p.event(ev("a", "F", 1));
  p.event(ev("a", "F", 2));
  ws2.recv({ type: "reset", channel: "a", epoch: "F", seq: 3, reason: "epoch_changed" }); // answers (E,4)
  ws2.recv(ev("a", "F", 4));
  ws2.recv(ev("a", "E", 5)); // a straggler from the old epoch
  p.event(ev("a", "F", 3));
  p.event(ev("a", "F", 4));
  ws2.recv(ev("a", "F", 5));
  assert.deepEqual(log, ["E:4", "reset:F:0:epoch_changed", "F:1", "F:2", "F:3", "F:4", "F:5"]);
});

test("server reset on resume: onReset once with the new position, then live events", async (t) => {
  const { net, log, sub, flush } = start(t);
  sub("a", { epoch: "E", seq: 3 });
  await flush();
  const ws = net.ws();
  ws.open();
  ws.recv({ type: "reset", channel: "a", epoch: "E", seq: 40, reason: "history_exceeded" });
  ws.recv({ type: "reset", channel: "a", epoch: "E", seq: 40, reason: "history_exceeded" });
  ws.recv(ev("a", "E", 40));
  ws.recv(ev("a", "E", 41));
  assert.deepEqual(log, ["reset:E:40:history_exceeded", "E:41"]);
});

test("vendor silent past three heartbeat intervals: falls to ws and resumes there", async (t) => {
  const { net, log, advance, p, statuses, rt } = await onVendor(t, { epoch: "E", seq: 0 });
  p.event(ev("a", "E", 1));
  for (let i = 0; i < 4; i++) { await advance(5000); p.heartbeat(); }
  await advance(15000);
  assert.equal(net.sockets.length, 0, "three intervals is not yet silence");
  await advance(1000);
  assert.ok(p.disconnected);
  await advance(300);
  const ws = net.ws();
  ws.open();
  assert.deepEqual(ws.subs(), [{ type: "subscribe", channel: "a", since: { epoch: "E", seq: 1 } }]);
  ws.recv(ev("a", "E", 1));
  ws.recv(ev("a", "E", 2));
  assert.deepEqual(log, ["E:1", "E:2"]);
  // ws connecting, then up: it is below the route's step, so degraded both times.
  assert.deepEqual(statuses, ["offline/vendor", "live/vendor", "degraded/ws", "degraded/ws"]);
  assert.equal(rt.status().connected, true);
});

test("vendor that never proves itself (no heartbeat) is left after the connect time-out", async (t) => {
  const { net, sub, advance, flush } = start(t, { route: VENDOR_ROUTE });
  sub("a");
  await flush();
  await advance(14950); // connectTimeoutMs + one vendor heartbeat interval
  assert.equal(net.pusher().disconnected, undefined);
  await advance(50);
  assert.ok(net.pusher().disconnected);
  await advance(300);
  assert.equal(net.sockets.length, 1);
});

test("no tight loop: a failing ws and sse are tried once each, then polls back off exponentially up to 20 s", async (t) => {
  const { rt, net, flush, advance } = start(t, {
    random: () => 0.999999,
    opts: (n) => ({
      probeMs: 1e9,
      WebSocket: class extends n.WebSocket { constructor(u) { super(u); Promise.resolve().then(() => this.drop()); } },
      EventSource: class extends n.EventSource { constructor(u) { super(u); Promise.resolve().then(() => this.error()); } },
    }),
  });
  net.auto.set("POST /v1/poll", () => [503, { error: { code: "shutting_down", message: "draining" } }]);
  rt.subscribe("a", {});
  await flush();
  await advance(120000, 500);
  assert.equal(net.sockets.length, 1);
  assert.equal(net.sources.length, 1);
  const at = net.requests.filter((r) => r.path === "/v1/poll").map((r) => r.at);
  const gaps = at.slice(1).map((x, i) => x - at[i]);
  assert.deepEqual(gaps, [1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000, 20000]);
});

test("a WebSocket that keeps dropping right after it opens is left for SSE", async (t) => {
  const { net, sub, advance, flush } = start(t);
  sub("a");
  await flush();
  net.ws().open();
  net.ws().drop();
  await advance(300);
  assert.equal(net.sockets.length, 2, "one retry");
  net.ws().open();
  net.ws().drop();
  await advance(1000);
  assert.equal(net.sockets.length, 2);
  assert.equal(net.sources.length, 1);
});

test("climbs back from poll when the route says so, after a jittered delay", async (t) => {
  let route = { ...ROUTE, route: "poll" };
  const { net, log, sub, advance, flush, statuses } = start(t, { route: () => route, opts: { probeMs: 10000 } });
  sub("a", { epoch: "E", seq: 1 });
  await flush();
  net.last("/v1/poll").respond(200, { results: [{ channel: "a", epoch: "E", events: [ev("a", "E", 2)], next: { epoch: "E", seq: 2 }, reset: false }] });
  await flush();
  route = { ...ROUTE, route: "self" };
  await advance(10000); // periodic route check (probeMs * (0.5 + random))
  assert.equal(net.requests.filter((r) => r.path === "/v1/route").length, 2);
  await advance(2450);
  assert.equal(net.sockets.length, 0, "random * jitter_ms not over yet");
  await advance(50);
  const ws = net.ws();
  ws.open();
  assert.deepEqual(ws.subs()[0].since, { epoch: "E", seq: 2 });
  assert.equal(net.pending("/v1/poll").length, 0, "the long poll was cut when ws took over");
  ws.recv(ev("a", "E", 3));
  await advance(5000);
  assert.equal(net.requests.filter((r) => r.path === "/v1/poll").length, 2);
  assert.deepEqual(log, ["E:2", "E:3"]);
  assert.deepEqual(statuses, ["offline/poll", "polling/poll", "live/ws"]);
});

test("a route message moving down switches after the jittered delay", async (t) => {
  const { net, sub, advance, flush, statuses } = start(t, { random: () => 0.1 });
  sub("a", { epoch: "E", seq: 1 });
  await flush();
  const ws = net.ws();
  ws.open();
  ws.recv({ ...ROUTE, route: "poll", jitter_ms: 10000 });
  await advance(950);
  assert.ok(!ws.closed);
  await advance(50);
  assert.ok(ws.closed);
  assert.deepEqual(net.last("/v1/poll").body.channels, [{ channel: "a", epoch: "E", since: 1 }]);
  assert.deepEqual(statuses, ["offline/ws", "live/ws", "degraded/poll"]);
});

test("staleness watchdog: offline after staleAfterMs of silence, one onReset per channel when heard again", async (t) => {
  const { net, log, sub, advance, flush, statuses, rt } = start(t, { opts: { staleAfterMs: 20000 } });
  sub("a", { epoch: "E", seq: 3 });
  sub("b");
  await flush();
  const ws = net.ws();
  ws.open();
  ws.recv(ev("a", "E", 4));
  await advance(20000);
  assert.equal(rt.status().state, "live");
  await advance(1000);
  assert.equal(rt.status().state, "offline");
  assert.ok(rt.status().staleForMs >= 20000);
  ws.recv({ type: "heartbeat", ts: Date.now() });
  ws.recv({ type: "heartbeat", ts: Date.now() });
  ws.recv(ev("a", "E", 5));
  assert.deepEqual(log, ["E:4", "reset:E:4:stale", "E:5"]);
  assert.deepEqual(statuses, ["offline/ws", "live/ws", "offline/ws", "live/ws"]);
  assert.equal(rt.status().staleForMs, 0);
});

test("visible again after a long hidden spell: reconnects at once from the held position", async (t) => {
  let skew = 0;
  const listeners = {};
  const document = { visibilityState: "visible", addEventListener: (type, f) => { listeners[type] = f; } };
  const { net, sub, flush } = start(t, { opts: { document, now: () => Date.now() + skew } });
  sub("a", { epoch: "E", seq: 1 });
  await flush();
  const ws = net.ws();
  ws.open();
  ws.recv(ev("a", "E", 2));
  document.visibilityState = "hidden";
  listeners.visibilitychange();
  skew = 120000; // background tabs get their timers throttled: no tick ran meanwhile
  document.visibilityState = "visible";
  listeners.visibilitychange();
  await flush();
  assert.ok(ws.closed);
  assert.equal(net.sockets.length, 2);
  net.ws().open();
  assert.deepEqual(net.ws().subs()[0].since, { epoch: "E", seq: 2 });
});

test("window offline/online: status goes offline, then reconnects after a short random delay", async (t) => {
  const listeners = {};
  const window = { addEventListener: (type, f) => { listeners[type] = f; } };
  const { net, sub, flush, advance, rt } = start(t, { opts: { window } });
  sub("a");
  await flush();
  net.ws().open();
  listeners.offline();
  assert.equal(rt.status().state, "offline");
  listeners.online();
  await advance(450);
  assert.equal(net.sockets.length, 1);
  await advance(100);
  assert.equal(net.sockets.length, 2);
});

test("subscribers: several per channel, unsubscribe tells the server when the last one leaves", async (t) => {
  const { net, rt, flush } = start(t);
  const a = [], b = [], all = [];
  rt.on("event", (e) => all.push(e.seq));
  const s1 = rt.subscribe("a", { onEvent: (e) => a.push(e.seq) });
  const s2 = rt.subscribe("a", { onEvent: (e) => b.push(e.seq) });
  assert.throws(() => rt.subscribe("bad name!", {}), TypeError);
  await flush();
  const ws = net.ws();
  ws.open();
  ws.recv({ type: "subscribed", channel: "a", epoch: "E", seq: 0 });
  ws.recv(ev("a", "E", 1));
  s1.unsubscribe();
  ws.recv(ev("a", "E", 2));
  assert.deepEqual(s2.position, { epoch: "E", seq: 2 });
  s2.unsubscribe();
  ws.recv(ev("a", "E", 3));
  assert.deepEqual([a, b, all], [[1], [1, 2], [1, 2]]);
  assert.deepEqual(ws.sent.map((m) => m.type), ["subscribe", "unsubscribe"]);
});

test("a handler that throws does not stop delivery to the others", async (t) => {
  const { net, rt, flush, advance } = start(t);
  const got = [];
  rt.subscribe("a", { onEvent: () => { throw new Error("page bug"); } });
  rt.subscribe("a", { onEvent: (e) => got.push(e.seq) });
  await flush();
  net.ws().open();
  net.ws().recv(ev("a", "E", 1));
  assert.deepEqual(got, [1]);
  await assert.rejects(advance(10), /page bug/); // surfaced asynchronously, not swallowed
});

test("sse: a new channel reopens the stream with every position; a reconnect message is obeyed", async (t) => {
  const { net, log, sub, advance, flush } = start(t, { opts: { WebSocket: null } });
  sub("a", { epoch: "E", seq: 2 });
  await flush();
  const es = net.es();
  es.open();
  es.recv(ev("a", "E", 3));
  sub("b", { epoch: "F", seq: 9 });
  await flush();
  assert.ok(es.closed);
  const es2 = net.es();
  assert.deepEqual([...es2.query().getAll("channel")], ["a", "b"]);
  assert.equal(es2.query().get("cursor"), "a~E~3,b~F~9");
  es2.open();
  es2.recv(ev("b", "F", 10));
  es2.recv({ type: "reconnect", reason: "slow_consumer", retry_ms: 700 });
  es2.error();
  await advance(650);
  assert.equal(net.sources.length, 2);
  await advance(50);
  assert.equal(net.sources.length, 3, "same step, after retry_ms");
  assert.equal(net.es().query().get("cursor"), "a~E~3,b~F~10");
  assert.deepEqual(log, ["E:3", "F:10"]);
});

test("poll: a new channel cuts the running long poll short and joins at once", async (t) => {
  const { net, sub, flush } = start(t, { route: { ...ROUTE, route: "poll" } });
  sub("a", { epoch: "E", seq: 1 });
  await flush();
  net.last("/v1/poll").respond(200, { results: [{ channel: "a", epoch: "E", events: [], next: { epoch: "E", seq: 1 }, reset: false }] });
  await flush();
  const long = net.last("/v1/poll");
  assert.equal(long.body.wait_ms, 25000);
  sub("b");
  await flush();
  assert.ok(long.done);
  const next = net.last("/v1/poll");
  assert.deepEqual(next.body.channels, [{ channel: "a", epoch: "E", since: 1 }, { channel: "b" }]);
  assert.equal(next.body.wait_ms, 0, "no long poll until every channel has a position");
});

test("after a stale spell the page hears one onReset even when the server also resets", async (t) => {
  const { net, log, sub, advance, flush } = start(t, { opts: { staleAfterMs: 20000 } });
  sub("a", { epoch: "E", seq: 3 });
  await flush();
  net.ws().open();
  await advance(38000); // stale at 20 s, ws silent (2.5 heartbeats) at 37.5 s
  assert.ok(net.ws().closed);
  await advance(500);
  const es = net.es(); // silence moves one step down
  assert.equal(es.query().get("cursor"), "a~E~3");
  es.open();
  es.recv({ type: "reset", channel: "a", epoch: "E", seq: 50, reason: "history_exceeded" });
  es.recv(ev("a", "E", 51));
  assert.deepEqual(log, ["reset:E:3:stale", "E:51"]);
});

test("token may be a function, asked again for every connection", async (t) => {
  let n = 0;
  const { net, sub, flush, advance } = start(t, { opts: { token: async () => `t${++n}` } });
  sub("a");
  await flush();
  net.ws().open();
  net.ws().drop(4008);
  await advance(300);
  assert.deepEqual(net.sockets.map((s) => new URL(s.url).searchParams.get("token")), ["t1", "t2"]);
  assert.equal(net.last("/v1/route").headers.Authorization, undefined, "the route needs no token");
});

test("after a stale spell, only the first answer may be folded into the stale onReset", async (t) => {
  const { net, log, sub, advance, flush } = start(t, { opts: { staleAfterMs: 20000 } });
  sub("a", { epoch: "E", seq: 3 });
  await flush();
  const ws = net.ws();
  ws.open();
  await advance(21000);
  ws.drop(4008); // slow consumer: same step, resume
  await advance(300);
  const ws2 = net.ws();
  ws2.open();
  ws2.recv({ type: "subscribed", channel: "a", epoch: "E", seq: 3 });
  ws2.recv({ type: "reset", channel: "a", epoch: "F", seq: 0, reason: "epoch_changed" }); // much later, real news
  assert.deepEqual(log, ["reset:E:3:stale", "reset:F:0:epoch_changed"]);
});

test("vendor route without the page's SDK starts on ws", async (t) => {
  const a = start(t, { route: VENDOR_ROUTE, opts: { vendor: undefined } });
  a.sub("a");
  await a.flush();
  assert.equal(a.net.pushers.length, 0);
  assert.equal(a.net.sockets.length, 1);
});

test("a vendor that turns unavailable is left for ws", async (t) => {
  const b = start(t, { route: VENDOR_ROUTE });
  b.sub("a");
  await b.flush();
  const p = b.net.pusher();
  p.heartbeat();
  (p.state.state_change || []).forEach((f) => f({ previous: "connected", current: "unavailable" }));
  assert.ok(p.disconnected);
  await b.advance(300);
  assert.equal(b.net.sockets.length, 1);
});

test("vendor: private channels are signed by POST /v1/vendor/auth with the page's token", async (t) => {
  const route = { ...VENDOR_ROUTE, vendor: { ...PUSHER_INFO, private: true } };
  const { net, log, sub, flush } = start(t, { route });
  sub("clinic:7");
  await flush();
  const p = net.pusher();
  assert.deepEqual([...p.channels.keys()].sort(), ["private-clinic;7", "private-understudy.heartbeat"]);
  const authorize = p.options.channelAuthorization.customHandler;
  const answers = [];
  authorize({ socketId: "1.2", channelName: "private-clinic;7" }, (err, a) => answers.push([err, a]));
  await flush();
  const r = net.last("/v1/vendor/auth");
  assert.equal(r.method, "POST");
  assert.equal(r.headers.Authorization, "Bearer tok");
  assert.deepEqual(r.body, { socket_id: "1.2", channel_name: "private-clinic;7" });
  r.respond(200, { auth: "app-key:sig" });
  await flush();
  assert.deepEqual(answers, [[null, { auth: "app-key:sig" }]]);
  // A refusal reaches pusher-js as an error (it then reports subscription_error).
  authorize({ socketId: "1.2", channelName: "private-other" }, (err, a) => answers.push([err && err.status, a]));
  await flush();
  net.last("/v1/vendor/auth").respond(403, { error: { code: "channel_forbidden", message: "no" } });
  await flush();
  assert.deepEqual(answers[1], [403, null]);
  // Events arrive on the private channel as on a public one.
  p.trigger("private-understudy.heartbeat", "understudy.heartbeat", {});
  p.trigger("private-clinic;7", "understudy.event", JSON.stringify(ev("clinic:7", "E", 1)));
  assert.deepEqual(log, ["E:1"]);
});

test("tenants: the route is asked for the page's first channel, and vendor auth names the route's tenant", async (t) => {
  const route = { ...VENDOR_ROUTE, tenant: "clinic-a", vendor: { ...PUSHER_INFO, private: true } };
  const { net, sub, flush } = start(t, { route });
  sub("clinic-a.room");
  await flush();
  assert.equal(net.last("/v1/route").query.get("channel"), "clinic-a.room");
  assert.equal(net.last("/v1/route").headers.Authorization, undefined, "the route needs no token");
  const authorize = net.pusher().options.channelAuthorization.customHandler;
  authorize({ socketId: "1.2", channelName: "private-understudy.heartbeat" }, () => {});
  await flush();
  assert.deepEqual(net.last("/v1/vendor/auth").body,
    { tenant: "clinic-a", socket_id: "1.2", channel_name: "private-understudy.heartbeat" });
});
