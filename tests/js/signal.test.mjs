// Signal-only channels (vendors.signal_only): the vendor carries only {type: "signal", channel,
// epoch, seq, id}; the client fetches the bodies from history with the page's token and
// delivers them in order, once, with one fetch covering every signal that came before it answers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { _internal } from "../../src/web/understudy.mjs";
import { ev, start, ROUTE, PUSHER_INFO, ABLY_INFO } from "./fakes.mjs";

const PUSHER_ROUTE = { ...ROUTE, route: "vendor", vendor: PUSHER_INFO };
const sig = (epoch, seq) => ({ type: "signal", channel: "a", epoch, seq, id: `${epoch}-${seq}` });
const page = (epoch, events) => ({
  channel: "a", epoch, events, next: events.length ? { epoch, seq: events[events.length - 1].seq } : null, reset: false,
});

// On the Pusher path for channel "a" at E:1, caught up, heartbeat heard.
async function onPusher(t) {
  const h = start(t, { route: PUSHER_ROUTE });
  h.sub("a", { epoch: "E", seq: 1 });
  await h.flush();
  const p = h.net.pusher();
  p.heartbeat();
  p.ready("a");
  await h.flush();
  h.net.last("/v1/channels/a/events").respond(200, page("E", []));
  await h.flush();
  return { ...h, p, fetches: () => h.net.requests.filter((r) => r.path === "/v1/channels/a/events").slice(1) };
}

test("signals before the fetch answers share one fetch; a signal during it asks for one more round", async (t) => {
  const { net, log, flush, p, fetches } = await onPusher(t);
  p.event(sig("E", 2));
  p.event(sig("E", 3));
  await flush();
  assert.equal(fetches().length, 1, "one fetch for both signals");
  const first = fetches()[0];
  assert.deepEqual([first.query.get("epoch"), first.query.get("since")], ["E", "1"]);
  assert.equal(first.headers.Authorization, "Bearer tok", "the page's own token fetches the bodies");
  p.event(sig("E", 4)); // published after history answered the first fetch
  await flush();
  assert.equal(fetches().length, 1, "no second fetch while one is out");
  first.respond(200, page("E", [ev("a", "E", 2), ev("a", "E", 3)]));
  await flush();
  assert.deepEqual(log, ["E:2", "E:3"]);
  const second = fetches()[1];
  assert.deepEqual([second.query.get("epoch"), second.query.get("since")], ["E", "3"]);
  second.respond(200, page("E", [ev("a", "E", 4)]));
  await flush();
  // Late and repeated signals for delivered events cost nothing.
  p.event(sig("E", 3));
  p.event(sig("E", 4));
  await flush();
  assert.equal(fetches().length, 2);
  assert.deepEqual(log, ["E:2", "E:3", "E:4"]);
  assert.equal(net.pending().length, 0);
});

test("a fetch that already holds what later signals announce is not repeated", async (t) => {
  const { net, log, flush, p, fetches } = await onPusher(t);
  p.event(sig("E", 2));
  await flush();
  p.event(sig("E", 3));
  p.event(sig("E", 2));
  await flush();
  fetches()[0].respond(200, page("E", [ev("a", "E", 2), ev("a", "E", 3)]));
  await flush();
  assert.equal(fetches().length, 1);
  assert.deepEqual(log, ["E:2", "E:3"]);
  assert.equal(net.pending().length, 0);
});

test("a signal during the catch-up fetch gets its own round after it", async (t) => {
  const h = start(t, { route: PUSHER_ROUTE });
  h.sub("a", { epoch: "E", seq: 1 });
  await h.flush();
  const p = h.net.pusher();
  p.heartbeat();
  p.ready("a");
  await h.flush();
  p.event(sig("E", 2)); // published after history answered the catch-up
  await h.flush();
  const fetches = () => h.net.requests.filter((r) => r.path === "/v1/channels/a/events");
  assert.equal(fetches().length, 1);
  fetches()[0].respond(200, page("E", []));
  await h.flush();
  assert.equal(fetches().length, 2);
  assert.equal(fetches()[1].query.get("since"), "1");
  fetches()[1].respond(200, page("E", [ev("a", "E", 2)]));
  await h.flush();
  assert.deepEqual(h.log, ["E:2"]);
  assert.equal(h.net.pending().length, 0);
});

test("a page that stops short of the last signal is followed by the next page", async (t) => {
  const { net, log, flush, p, fetches } = await onPusher(t);
  p.event(sig("E", 3)); // the signal for 2 went missing on the vendor
  await flush();
  fetches()[0].respond(200, page("E", [ev("a", "E", 2)])); // as if limit were 1
  await flush();
  assert.equal(fetches().length, 2);
  assert.equal(fetches()[1].query.get("since"), "2");
  fetches()[1].respond(200, page("E", [ev("a", "E", 3)]));
  await flush();
  assert.deepEqual(log, ["E:2", "E:3"]);
  assert.equal(net.pending().length, 0);
});

test("a failed fetch is asked again after gapWaitMs; nothing is lost or doubled", async (t) => {
  const { log, flush, advance, p, fetches } = await onPusher(t);
  p.event(sig("E", 2));
  await flush();
  fetches()[0].respond(503, { error: { code: "unavailable", message: "busy" } });
  await advance(950);
  assert.equal(fetches().length, 1);
  await advance(100);
  assert.equal(fetches().length, 2);
  assert.equal(fetches()[1].query.get("since"), "1");
  fetches()[1].respond(200, page("E", [ev("a", "E", 2)]));
  await flush();
  p.event(sig("E", 2));
  await advance(2000);
  assert.equal(fetches().length, 2);
  assert.deepEqual(log, ["E:2"]);
});

test("a signal from a new epoch resets once, then fetches that epoch from just before it", async (t) => {
  const { log, flush, p, fetches } = await onPusher(t);
  p.event(sig("F", 5));
  p.event(sig("F", 6));
  await flush();
  assert.equal(fetches().length, 1);
  assert.deepEqual([fetches()[0].query.get("epoch"), fetches()[0].query.get("since")], ["F", "4"]);
  fetches()[0].respond(200, page("F", [ev("a", "F", 5), ev("a", "F", 6)]));
  await flush();
  p.event(sig("E", 2)); // the old epoch is noise now
  await flush();
  assert.equal(fetches().length, 1);
  assert.deepEqual(log, ["reset:F:4:epoch_changed", "F:5", "F:6"]);
});

test("ably: a signal in a realtime message fetches its body the same way", async (t) => {
  const h = start(t, { route: { ...ROUTE, route: "vendor", vendor: ABLY_INFO }, opts: { vendor: undefined } });
  h.sub("a", { epoch: "E", seq: 1 });
  const a = await h.net.ablyToken(h.flush);
  a.connected();
  a.heartbeat();
  a.attached("a");
  await h.flush();
  h.net.last("/v1/channels/a/events").respond(200, page("E", []));
  await h.flush();
  a.publish("a", "understudy.signal", JSON.stringify(sig("E", 2)));
  await h.flush();
  const r = h.net.last("/v1/channels/a/events");
  assert.equal(r.query.get("since"), "1");
  r.respond(200, page("E", [ev("a", "E", 2)]));
  await h.flush();
  assert.deepEqual(h.log, ["E:2"]);
});

test("cursor: a signal asks for a fetch only for what is neither delivered nor held", () => {
  const cur = new _internal.ChannelCursor({ epoch: "E", seq: 3 });
  assert.deepEqual(cur.signal(sig("E", 3)), { fetch: false, reset: null });
  assert.deepEqual(cur.signal(sig("E", 4)), { fetch: true, reset: null });
  cur.offer(ev("a", "E", 6));
  assert.deepEqual(cur.signal(sig("E", 6)), { fetch: false, reset: null }, "held after a gap");
  const fresh = new _internal.ChannelCursor(null);
  assert.deepEqual(fresh.signal(sig("E", 9)), { fetch: true, reset: null });
  assert.deepEqual(fresh.pos, { epoch: "E", seq: 8 });
});
