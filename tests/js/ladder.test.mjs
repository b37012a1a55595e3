import { test } from "node:test";
import assert from "node:assert/strict";
import { _internal } from "../../src/web/understudy.mjs";

const { Ladder, backoff, STEPS } = _internal;
const name = (i) => STEPS[i];

test("the route picks the first step", () => {
  const l = new Ladder(() => 0.5);
  l.setTop("vendor", true);
  assert.equal(name(l.begin()), "vendor");
  l.setTop("vendor", false); // no vendor configured or no SDK on the page
  assert.equal(name(l.begin()), "ws");
  l.setTop("self", true);
  assert.equal(name(l.begin()), "ws");
  l.setTop("poll", true);
  assert.equal(name(l.begin()), "poll");
  const noWs = new Ladder(() => 0.5, [true, false, true, true]);
  noWs.setTop("self", false);
  assert.equal(name(noWs.begin()), "sse");
});

test("a step that does not connect or goes silent hands over to the next; poll is the floor", () => {
  const l = new Ladder(() => 0.5);
  l.setTop("vendor", true);
  l.begin();
  const seen = [];
  for (const kind of ["connect", "silent", "connect", "connect", "silent"]) seen.push(name(l.failed(l.cur, kind).step));
  assert.deepEqual(seen, ["ws", "sse", "poll", "poll", "poll"]);
});

test("a dropped step that had been stable gets one retry; one that keeps dropping is left", () => {
  const l = new Ladder(() => 0.5);
  l.setTop("self", false);
  l.begin();
  l.opened(1);
  l.stable();
  assert.equal(name(l.failed(1, "drop").step), "ws");
  l.opened(1); // up again, but not yet stable
  assert.equal(name(l.failed(1, "drop").step), "sse");
  // a drop before the step ever came up is a failure to connect
  assert.equal(name(l.failed(2, "drop").step), "poll");
});

test("a server-requested reconnect keeps the step", () => {
  const l = new Ladder(() => 0.5);
  l.setTop("self", false);
  l.begin();
  for (let i = 0; i < 5; i++) assert.equal(name(l.failed(1, "retry").step), "ws");
});

test("back-off: full jitter under a cap that doubles from 0.5 s to 20 s, never below 100 ms", () => {
  const hi = new Ladder(() => 0.999999);
  const caps = Array.from({ length: 9 }, () => Math.round(hi.delay()));
  assert.deepEqual(caps, [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000]);
  hi.stable();
  assert.equal(Math.round(hi.delay()), 500);
  const lo = new Ladder(() => 0);
  for (let i = 0; i < 5; i++) assert.equal(lo.delay(), 100);
  const draws = [0.25, 0.5, 0.75];
  assert.deepEqual(draws.map((r) => backoff(3, () => r)), [1000, 2000, 3000]);
});

test("setTop says which way to move", () => {
  const l = new Ladder(() => 0.5);
  assert.equal(l.setTop("vendor", true), 0); // not started yet
  l.begin();
  assert.equal(l.setTop("poll", true), -3); // above the allowed step: move down
  l.begin();
  assert.equal(l.setTop("self", true), 2); // below the best step: climb
});

test("probes climb from the top rung down to just above the current step", () => {
  const l = new Ladder(() => 0.5);
  l.setTop("poll", true);
  l.begin();
  l.opened(3);
  l.setTop("vendor", true);
  const tried = [];
  let i;
  while (tried.length < 3 && (i = l.startProbe()) >= 0) {
    tried.push(name(i));
    assert.equal(l.startProbe(), -1, "one probe at a time");
    assert.equal(l.failed(i, "connect"), null, "a failed probe leaves the current step alone");
  }
  assert.deepEqual(tried, ["vendor", "ws", "sse"]);
  assert.equal(name(l.cur), "poll");
  // the next round starts again from the top, and a probe that comes up replaces the current step
  assert.equal(name(l.startProbe()), "vendor");
  assert.equal(name(l.opened(0)), "poll");
  assert.equal(name(l.cur), "vendor");
  assert.equal(l.startProbe(), -1);
});

test("no probe while the current step is down", () => {
  const l = new Ladder(() => 0.5);
  l.setTop("poll", true);
  l.begin();
  l.setTop("self", true);
  assert.equal(l.startProbe(), -1);
});
