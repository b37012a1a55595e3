// Reconnect storms: a server that admits new subscribers at a bounded rate names a wait when it
// refuses one (WebSocket close 1013 with retry_after_ms, an SSE reconnect message, a 503 with
// retry_after_ms or Retry-After). The client comes back after exactly that wait, on the same
// step and from its position, instead of its own back-off or moving down the ladder.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ev, start } from "./fakes.mjs";

const CH = "clinic-42.waiting-room";
const refusal = (ms) => JSON.stringify({ code: "reconnect_later", retry_after_ms: ms });

test("ws refused with 1013: back on ws after each named wait, then resumes from its position", async (t) => {
  // A random draw near 1 would make the client's own back-off long: the named waits are shorter.
  const { net, log, sub, advance, flush } = start(t, { random: () => 0.999999 });
  sub(CH, { epoch: "E", seq: 5 });
  await flush();
  const waits = [1200, 3400, 700];
  for (const [i, ms] of waits.entries()) {
    // The server accepts the upgrade and closes at once: onopen, then the 1013 close.
    const ws = net.ws();
    ws.readyState = 1;
    ws.onopen && ws.onopen();
    ws.drop(1013, refusal(ms));
    await advance(ms - 50);
    assert.equal(net.sockets.length, i + 1, `waits the named ${ms} ms`);
    await advance(50);
    assert.equal(net.sockets.length, i + 2, `comes back after ${ms} ms`);
  }
  assert.equal(net.sources.length, 0, "never moved down to SSE");
  const ws = net.ws();
  ws.open();
  assert.deepEqual(ws.subs(), [{ type: "subscribe", channel: CH, since: { epoch: "E", seq: 5 } }]);
  ws.recv({ type: "subscribed", channel: CH, epoch: "E", seq: 6 });
  ws.recv(ev(CH, "E", 6));
  assert.deepEqual(log, ["E:6"]);
});

test("a 1013 close without a readable wait falls back to the client's own back-off", async (t) => {
  const { net, sub, advance, flush } = start(t, { random: () => 0.5 });
  sub(CH);
  await flush();
  net.ws().drop(1013, "not json");
  // Not up yet and no named wait: an ordinary failed connect moves down to SSE.
  await advance(300);
  assert.equal(net.sockets.length, 1);
  assert.equal(net.sources.length, 1);
});

test("sse refused in-band: reopens the stream after retry_ms with every position", async (t) => {
  const { net, sub, advance, flush } = start(t, { opts: { WebSocket: null }, random: () => 0.999999 });
  sub("a", { epoch: "E", seq: 2 });
  await flush();
  const es = net.es();
  es.recv({ type: "reconnect", reason: "reconnect_later", retry_ms: 2500 });
  es.error();
  await advance(2450);
  assert.equal(net.sources.length, 1);
  await advance(50);
  assert.equal(net.sources.length, 2, "same step, after retry_ms");
  assert.equal(net.es().query().get("cursor"), "a~E~2");
  assert.equal(net.requests.filter((r) => r.path === "/v1/poll").length, 0, "never moved down to poll");
});

test("poll: a 503 naming a wait is obeyed, from retry_after_ms or else Retry-After", async (t) => {
  const { net, sub, advance, flush } = start(t, {
    opts: { WebSocket: null, EventSource: null },
    random: () => 0.999999,
  });
  const answers = [
    [503, { error: { code: "reconnect_later", message: "m", retry_after_ms: 2500 } }, { "retry-after": 3 }],
    [503, { error: { code: "engine_unavailable", message: "m" } }, { "retry-after": 4 }],
  ];
  // The third poll is left pending.
  net.auto.set("POST /v1/poll", () => answers.shift());
  sub("a");
  await flush();
  await advance(9000, 50);
  const at = net.requests.filter((r) => r.path === "/v1/poll").map((r) => r.at);
  assert.equal(at.length, 3);
  const gaps = at.slice(1).map((x, i) => x - at[i]);
  assert.deepEqual(gaps, [2500, 4000]);
});
