// pusher-js 8 from npm, unmodified, pointed at understudy's own WebSocket (`wsHost`/`wsPort`,
// `forceTLS: false`): in Node and in Chromium (its browser build from node_modules, in a page this
// test serves). Private channels are authorised by an endpoint built on the npm `pusher` server
// SDK's authorizeChannel, signing with the app's secret: the endpoint a team already has. Public
// and private channels get every event published through /v1/publish, in order, once; a wrong
// signature gets 4009 and the socket stays; pusher-js resumes by itself after a restart.

import { describe, it, after, before } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Pusher from "pusher-js";
import PusherServer from "pusher";
import { Understudy, ROOT, PUBLISHER_KEY, until, cleanup, launchBrowser, openPage } from "./harness.mjs";

const APP = { appId: "4242", key: "clinic-app-key", secret: "clinic-app-secret-0123456789" };
const APPS_TOML = [
  "[[apps]]",
  `id = "${APP.appId}"`, `key = "${APP.key}"`, `secret = "${APP.secret}"`, `forward = "none"`,
].join("\n");

const withTimeout = (p, ms, what) => Promise.race([
  p, new Promise((_, reject) => setTimeout(() => reject(new Error("timed out after " + ms + " ms: " + what)), ms)),
]);

async function publish(server, channel, name, data) {
  const r = await fetch(server.base + "/v1/publish", {
    method: "POST",
    headers: { Authorization: "Bearer " + PUBLISHER_KEY, "Content-Type": "application/json" },
    body: JSON.stringify({ channel, name, data }),
  });
  const text = await r.text();
  assert.equal(r.status, 202, text);
}

/**
 * The team's own web server: its channel auth endpoint (the Pusher server SDK's authorizeChannel
 * with the app secret, and one with a wrong secret for the refusal test) and, for Chromium, a
 * page and pusher-js's browser build.
 */
async function teamServer(page) {
  const sdk = new PusherServer({ ...APP, useTLS: false });
  const wrong = new PusherServer({ ...APP, secret: "not-the-app-secret-0000", useTLS: false });
  const srv = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    if (req.method === "POST" && (req.url === "/pusher/auth" || req.url === "/pusher/auth-wrong")) {
      const form = new URLSearchParams(body);
      const signer = req.url === "/pusher/auth" ? sdk : wrong;
      const auth = signer.authorizeChannel(form.get("socket_id"), form.get("channel_name"));
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(auth));
    } else if (req.url === "/pusher.min.js") {
      res.writeHead(200, { "Content-Type": "text/javascript" });
      res.end(readFileSync(join(ROOT, "node_modules", "pusher-js", "dist", "web", "pusher.min.js")));
    } else if (req.url === "/") {
      res.writeHead(200, { "Content-Type": "text/html" });
      res.end(page);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  srv.base = "http://127.0.0.1:" + srv.address().port;
  return srv;
}

/** Publishes `n` events alternately to `channels`; answers what each channel must receive. */
async function publishRun(server, channels, from, n) {
  const want = Object.fromEntries(channels.map((c) => [c, []]));
  for (let i = from; i < from + n; i++) {
    const ch = channels[i % channels.length];
    // Not JSON text: pusher-js parses a data string that is JSON (so "7" would arrive as 7).
    await publish(server, ch, "n", "e-" + i);
    want[ch].push("e-" + i);
  }
  return want;
}

describe("pusher-js 8 in Node on /app/{key}", async () => {
  const server = new Understudy("pusher-ws-node", {}, APPS_TOML);
  let team;
  const clients = [];
  before(async () => {
    await server.start();
    team = await teamServer("");
  });
  after(async () => {
    clients.forEach((c) => c.disconnect());
    if (team) team.close();
    await cleanup(server);
  });

  function client(authPath = "/pusher/auth") {
    const p = new Pusher(APP.key, {
      wsHost: "127.0.0.1", wsPort: server.port, forceTLS: false, enabledTransports: ["ws"],
      cluster: "mt1", disableStats: true,
      channelAuthorization: { endpoint: team.base + authPath, transport: "ajax" },
    });
    clients.push(p);
    return p;
  }
  // Resolves once the channel's subscription succeeded; collects its "n" events into `got`.
  function join(p, name, got) {
    return withTimeout(new Promise((resolve, reject) => {
      const ch = p.subscribe(name);
      ch.bind("n", (data) => got.push(data));
      ch.bind("pusher:subscription_succeeded", () => resolve(ch));
      ch.bind("pusher:subscription_error", (e) => reject(new Error(JSON.stringify(e))));
    }), 10000, "subscribing " + name);
  }

  it("public and private channels get every event in order, once", { timeout: 60000 }, async () => {
    const p = client();
    const got = { "ward-1": [], "private-ward-2": [] };
    await join(p, "ward-1", got["ward-1"]);
    await join(p, "private-ward-2", got["private-ward-2"]);
    const want = await publishRun(server, ["ward-1", "private-ward-2"], 0, 40);
    await until("every event", () => got["ward-1"].length >= 20 && got["private-ward-2"].length >= 20, 10000);
    // A last event on each, so a duplicate or a late extra would be seen before it.
    const tail = await publishRun(server, ["ward-1", "private-ward-2"], 40, 2);
    await until("the tail", () => got["ward-1"].length >= 21 && got["private-ward-2"].length >= 21, 10000);
    for (const ch of Object.keys(got)) assert.deepEqual(got[ch], [...want[ch], ...tail[ch]], ch);
  });

  it("a wrong signature gets 4009 and the socket stays for other channels", { timeout: 60000 }, async () => {
    const p = client("/pusher/auth-wrong");
    await withTimeout(new Promise((r) => p.connection.bind("connected", r)), 10000, "connected");
    const socketId = p.connection.socket_id;
    const refused = withTimeout(new Promise((r) => p.connection.bind("error", (e) => r(e))), 10000, "the 4009");
    p.subscribe("private-ward-9");
    const e = await refused;
    assert.equal(e.type, "PusherError");
    assert.equal(e.data.code, 4009);
    assert.equal(p.connection.state, "connected");
    const got = [];
    await join(p, "lobby", got);
    assert.equal(p.connection.socket_id, socketId, "the same socket");
    await publish(server, "private-ward-9", "n", "never");
    await publish(server, "lobby", "n", "L-1");
    await until("the lobby event", () => got.length === 1, 10000);
    assert.deepEqual(got, ["L-1"]);
  });

  it("resumes receiving after the server restarts, by itself", { timeout: 90000 }, async () => {
    const p = client();
    const got = { "ward-r": [], "private-ward-r": [] };
    let subscribed = 0;
    for (const name of Object.keys(got)) {
      const ch = await join(p, name, got[name]);
      ch.bind("pusher:subscription_succeeded", () => subscribed++);
    }
    const before = await publishRun(server, Object.keys(got), 0, 6);
    await until("events before the restart", () => got["ward-r"].length === 3 && got["private-ward-r"].length === 3, 10000);
    const oldSocket = p.connection.socket_id;
    await server.restart();
    // pusher-js reconnects on its own and subscribes again (re-signing the private channel for
    // its new socket id).
    await until("pusher-js to resubscribe", () => subscribed >= 2, 30000, 50);
    assert.notEqual(p.connection.socket_id, oldSocket);
    const afterRestart = await publishRun(server, Object.keys(got), 6, 6);
    await until("events after the restart", () => got["ward-r"].length === 6 && got["private-ward-r"].length === 6, 10000);
    for (const ch of Object.keys(got)) assert.deepEqual(got[ch], [...before[ch], ...afterRestart[ch]], ch);
  });
});

describe("pusher-js 8 in Chromium on /app/{key}", async () => {
  const server = new Understudy("pusher-ws-browser", {}, APPS_TOML);
  let team, browser;
  before(async () => {
    await server.start();
    const page = `<!doctype html><meta charset="utf-8"><title>pusher-js on understudy</title>
<script src="/pusher.min.js"></script>
<script>
  window.got = { "ward-b": [], "private-ward-b": [] };
  window.subscribed = 0;
  window.states = [];
  const pusher = new Pusher(${JSON.stringify(APP.key)}, {
    wsHost: "127.0.0.1", wsPort: ${server.port}, forceTLS: false, enabledTransports: ["ws"],
    cluster: "mt1", disableStats: true, channelAuthorization: { endpoint: "/pusher/auth", transport: "ajax" },
  });
  pusher.connection.bind("state_change", (s) => window.states.push(s.current));
  for (const name of Object.keys(window.got)) {
    const ch = pusher.subscribe(name);
    ch.bind("n", (d) => window.got[name].push(d));
    ch.bind("pusher:subscription_succeeded", () => window.subscribed++);
  }
</script>`;
    team = await teamServer(page);
    browser = await launchBrowser();
  });
  after(async () => {
    if (team) team.close();
    await cleanup(browser, server);
  });

  it("public and private channels get every event in order, and again after a kill and restart", { timeout: 120000 }, async () => {
    const page = await openPage(browser, "pusher-ws-browser", team.base + "/");
    const subscribed = (n) => page.waitForFunction((n) => window.subscribed >= n, n, { timeout: 30000, polling: 50 });
    const received = (n) => page.waitForFunction((n) => Object.values(window.got).every((g) => g.length >= n), n,
      { timeout: 10000, polling: 50 });
    await subscribed(2);
    const channels = ["ward-b", "private-ward-b"];
    const first = await publishRun(server, channels, 0, 20);
    await received(10);
    // Killed, not stopped: no goodbye, the socket just drops. Then a new process on the same port.
    server.child.kill("SIGKILL");
    await once(server.child, "exit");
    await server.start();
    await subscribed(4);
    const second = await publishRun(server, channels, 20, 20);
    await received(20);
    const got = await page.evaluate(() => window.got);
    for (const ch of channels) assert.deepEqual(got[ch], [...first[ch], ...second[ch]], ch);
    const states = await page.evaluate(() => window.states);
    assert.equal(states.at(-1), "connected", JSON.stringify(states));
  });
});
