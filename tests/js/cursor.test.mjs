import { test } from "node:test";
import assert from "node:assert/strict";
import { _internal } from "../../src/web/understudy.mjs";
import { ev } from "./fakes.mjs";

const { ChannelCursor } = _internal;

// Feeds events (or resets) to a cursor; answers what the page would see, as strings.
function feed(cur, items) {
  const out = [];
  for (const it of items) {
    const r = it.type === "reset" ? cur.reset(it, it.basis) : it.skip ? cur.skip() : cur.offer(it);
    if (r.reset) out.push(`reset:${r.reset.epoch}:${r.reset.seq}:${r.reset.reason}`);
    for (const e of r.events) out.push(`${e.epoch}:${e.seq}`);
  }
  return out;
}
const E = (seq) => ev("a", "E", seq);
const F = (seq) => ev("a", "F", seq);

test("delivers in order and drops duplicates", () => {
  const cur = new ChannelCursor({ epoch: "E", seq: 0 });
  assert.deepEqual(feed(cur, [E(1), E(2), E(2), E(1), E(3), E(3)]), ["E:1", "E:2", "E:3"]);
  assert.deepEqual(cur.pos, { epoch: "E", seq: 3 });
  assert.equal(cur.gap, false);
});

test("holds events after a gap until the gap closes", () => {
  const cur = new ChannelCursor({ epoch: "E", seq: 1 });
  assert.deepEqual(feed(cur, [E(4), E(3)]), []);
  assert.equal(cur.gap, true);
  assert.deepEqual(cur.pos, { epoch: "E", seq: 1 });
  assert.deepEqual(feed(cur, [E(2)]), ["E:2", "E:3", "E:4"]);
  assert.equal(cur.gap, false);
});

test("without a position, the first event heard sets it", () => {
  const cur = new ChannelCursor();
  assert.equal(cur.pos, null);
  assert.deepEqual(feed(cur, [E(5), E(6), E(5)]), ["E:5", "E:6"]);
});

test("init only applies to a cursor with no position", () => {
  const cur = new ChannelCursor();
  cur.init("E", 9);
  cur.init("F", 20);
  assert.deepEqual(cur.pos, { epoch: "E", seq: 9 });
  assert.deepEqual(feed(cur, [E(9), E(10)]), ["E:10"]);
});

test("an event from a new epoch resets once, then late events of the old epoch are ignored", () => {
  const cur = new ChannelCursor({ epoch: "E", seq: 3 });
  assert.deepEqual(feed(cur, [F(1), E(4), F(2), F(1), E(5)]), ["reset:F:0:epoch_changed", "F:1", "F:2"]);
  // a reset that still points at the old epoch is stale too
  assert.deepEqual(feed(cur, [{ type: "reset", epoch: "E", seq: 9, reason: "history_exceeded" }]), []);
});

test("a server reset moves the position once; repeats and stale answers stay silent", () => {
  const cur = new ChannelCursor({ epoch: "E", seq: 3 });
  const basis = { epoch: "E", seq: 3 };
  const reset = { type: "reset", epoch: "E", seq: 40, reason: "history_exceeded", basis };
  assert.deepEqual(feed(cur, [reset, reset, E(41), E(40)]), ["reset:E:40:history_exceeded", "E:41"]);
  // the same answer to the old position arriving over another path, after we moved on
  assert.deepEqual(feed(cur, [{ ...reset, seq: 43 }]), []);
  assert.deepEqual(feed(cur, [E(42)]), ["E:42"]);
});

test("a reset to a new epoch applies even when it answers an older position", () => {
  const cur = new ChannelCursor({ epoch: "E", seq: 7 });
  const r = { type: "reset", epoch: "F", seq: 2, reason: "epoch_changed", basis: { epoch: "E", seq: 3 } };
  assert.deepEqual(feed(cur, [r, F(3)]), ["reset:F:2:epoch_changed", "F:3"]);
});

test("ahead_of_head moves the position back", () => {
  const cur = new ChannelCursor({ epoch: "E", seq: 45 });
  const r = { type: "reset", epoch: "E", seq: 40, reason: "ahead_of_head", basis: { epoch: "E", seq: 45 } };
  assert.deepEqual(feed(cur, [r, E(41)]), ["reset:E:40:ahead_of_head", "E:41"]);
});

test("events buffered past a reset position are delivered after the reset", () => {
  const cur = new ChannelCursor({ epoch: "E", seq: 1 });
  const r = { type: "reset", epoch: "E", seq: 41, reason: "history_exceeded", basis: { epoch: "E", seq: 1 } };
  assert.deepEqual(feed(cur, [E(42), E(43), r]), ["reset:E:41:history_exceeded", "E:42", "E:43"]);
});

test("skip gives up on a gap: reset to just before the first held event, then deliver", () => {
  const cur = new ChannelCursor({ epoch: "E", seq: 1 });
  assert.deepEqual(feed(cur, [E(4), E(5), E(8), { skip: true }]), ["reset:E:3:gap", "E:4", "E:5"]);
  assert.equal(cur.gap, true); // 8 still waits for 6 and 7
  assert.deepEqual(feed(cur, [{ skip: true }]), ["reset:E:7:gap", "E:8"]);
  assert.deepEqual(feed(cur, [{ skip: true }]), []);
});
