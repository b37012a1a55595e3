import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import vm from "node:vm";
import Understudy, { connect, adapters, _internal } from "../../src/web/understudy.mjs";

const src = readFileSync(new URL("../../src/web/understudy.js", import.meta.url), "utf8");

test("a classic <script> gets the global Understudy", () => {
  const ctx = vm.createContext({});
  vm.runInContext(src, ctx, { filename: "understudy.js" });
  assert.equal(typeof ctx.Understudy.connect, "function");
  assert.equal(typeof ctx.Understudy._internal.ChannelCursor, "function");
  assert.equal(typeof ctx.Understudy.adapters.pusher, "function");
  assert.equal(typeof ctx.Understudy.adapters.ably, "function");
  assert.equal(ctx.Understudy.adapters.ably.builtin, true, "Ably needs no SDK from the page");
});

test("the classic file has no module syntax, and parses as a script", () => {
  assert.doesNotThrow(() => new vm.Script(src));
  assert.doesNotMatch(src, /^\s*(export|import)\b/m);
});

test("the ES module entry re-exports the same object", () => {
  assert.equal(Understudy, globalThis.Understudy);
  assert.equal(connect, Understudy.connect);
  assert.equal(adapters, Understudy.adapters);
  assert.equal(_internal, Understudy._internal);
});

test("stays within the size budget", async () => {
  // Raw gzip is a loose bound that needs nothing installed; minified+gzipped is the budget.
  assert.ok(gzipSync(src, { level: 9 }).length < 12 * 1024);
  let minify;
  try { ({ minify } = await import("terser")); } catch { return; } // devDependency not installed
  const { code } = await minify(src, { compress: true, mangle: true, format: { comments: false } });
  assert.ok(gzipSync(code, { level: 9 }).length < 8 * 1024);
});
