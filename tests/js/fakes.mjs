// Fake network, transports and clock for the client tests. Nothing here touches a socket.
import { mock } from "node:test";
import Understudy from "../../src/web/understudy.mjs";

export const T0 = 1_700_000_000_000;
export const ROUTE = {
  type: "route", route: "self", mode: "auto", vendor: null, poll_interval_ms: 2000,
  heartbeat_ms: 15000, vendor_heartbeat_ms: 5000, changed_at: T0, jitter_ms: 5000,
};
export const PUSHER_INFO = { kind: "pusher", key: "app-key", host: "127.0.0.1", port: 6001, tls: false, cluster: "mt1" };
export const ABLY_INFO = { kind: "ably", key: "app-key", host: "127.0.0.1", port: 6001, tls: false, private: true };
// What POST /v1/vendor/auth answers for Ably: a signed TokenRequest (values are placeholders).
export const TOKEN_REQUEST = {
  keyName: "app-key", ttl: 600000, capability: '{"clinic:*":["subscribe"],"understudy.heartbeat":["subscribe"]}',
  timestamp: T0, nonce: "n0", mac: "m0",
};

export function ev(channel, epoch, seq, extra) {
  return { type: "event", channel, seq, epoch, id: `${epoch}-${seq}`, name: "n", data: { seq }, ts: T0, ...extra };
}

// Lets pending promise chains (fake fetch answers, async paths) run.
export async function flush() {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

export class Net {
  constructor() {
    this.sockets = [];
    this.sources = [];
    this.pushers = [];
    this.requests = [];
    this.auto = new Map(); // "METHOD path" -> (req) => [status, json] answered at once
    const net = this;

    this.WebSocket = class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.sent = [];
        this.readyState = 0;
        this.at = Date.now();
        net.sockets.push(this);
      }
      send(s) { this.sent.push(JSON.parse(s)); }
      close() { this.readyState = 3; this.closed = true; }
      // server side
      open(heartbeatMs = 15000) {
        this.readyState = 1;
        this.onopen && this.onopen();
        this.recv({ type: "welcome", conn_id: "c1", heartbeat_ms: heartbeatMs });
      }
      recv(m) { this.onmessage && this.onmessage({ data: JSON.stringify(m) }); }
      drop(code = 1006, reason = "") { this.readyState = 3; this.onclose && this.onclose({ code, reason }); }
      subs() { return this.sent.filter((m) => m.type === "subscribe"); }
      // Ably's JSON realtime protocol, server side (VENDORS.md §2.2).
      connected() {
        this.readyState = 1;
        this.onopen && this.onopen();
        this.recv({ action: 4, connectionId: "a1", connectionDetails: { connectionKey: "k1", maxIdleInterval: 15000 } });
      }
      attaches() { return this.sent.filter((m) => m.action === 10).map((m) => m.channel); }
      attached(channel) { this.recv({ action: 11, channel, flags: 0 }); }
      publish(channel, name, data) { this.recv({ action: 15, channel, messages: [{ id: "m", name, data, timestamp: Date.now() }] }); }
      heartbeat() { this.publish("understudy.heartbeat", "understudy.heartbeat", JSON.stringify({ type: "heartbeat", ts: Date.now() })); }
      event(e) { this.publish(e.channel, e.name, JSON.stringify(e)); }
    };

    this.EventSource = class FakeEventSource {
      constructor(url) {
        this.url = url;
        this.listeners = {};
        this.at = Date.now();
        net.sources.push(this);
      }
      addEventListener(type, f) { (this.listeners[type] = this.listeners[type] || []).push(f); }
      close() { this.closed = true; }
      open() { this.onopen && this.onopen(); }
      recv(m) { this.onmessage && this.onmessage({ data: JSON.stringify(m) }); }
      heartbeat() { (this.listeners.heartbeat || []).forEach((f) => f({ data: '{"type":"heartbeat"}' })); }
      error() { this.onerror && this.onerror({}); }
      query() { return new URL(this.url).searchParams; }
    };

    this.fetch = (url, init) => new Promise((resolve, reject) => {
      const u = new URL(url);
      const req = {
        method: init.method, url, path: u.pathname, query: u.searchParams, headers: init.headers,
        body: init.body ? JSON.parse(init.body) : null, at: Date.now(), done: false,
        respond(status, json, headers = {}) {
          if (req.done) return;
          req.done = true;
          const get = (k) => (k.toLowerCase() in headers ? String(headers[k.toLowerCase()]) : null);
          resolve({ ok: status >= 200 && status < 300, status, headers: { get }, json: async () => json });
        },
        fail(err = new TypeError("network")) {
          if (req.done) return;
          req.done = true;
          reject(err);
        },
      };
      if (init.signal) init.signal.addEventListener("abort", () => req.fail(new Error("aborted")));
      this.requests.push(req);
      const a = this.auto.get(`${req.method} ${req.path}`);
      if (a) {
        const out = a(req);
        if (out) req.respond(out[0], out[1], out[2]);
      }
    });

    this.Pusher = class FakePusher {
      constructor(key, options) {
        this.key = key;
        this.options = options;
        this.channels = new Map();
        this.state = {};
        this.connection = { bind: (e, f) => { (this.state[e] = this.state[e] || []).push(f); } };
        net.pushers.push(this);
      }
      subscribe(name) {
        if (!this.channels.has(name)) this.channels.set(name, { name, handlers: {}, bind(e, f) { (this.handlers[e] = this.handlers[e] || []).push(f); } });
        return this.channels.get(name);
      }
      unsubscribe(name) { this.channels.delete(name); }
      disconnect() { this.disconnected = true; }
      // vendor side
      trigger(name, event, data) {
        const c = this.channels.get(name);
        (c && c.handlers[event] || []).forEach((f) => f(data));
      }
      heartbeat() { this.trigger("understudy.heartbeat", "understudy.heartbeat", { type: "heartbeat", ts: Date.now() }); }
      event(e) { this.trigger(e.channel.replace(/:/g, ";"), "understudy.event", JSON.stringify(e)); }
      ready(ch) { this.trigger(ch.replace(/:/g, ";"), "pusher:subscription_succeeded", {}); }
    };
  }

  pending(path) { return this.requests.filter((r) => !r.done && (!path || r.path === path)); }
  last(path) { const r = this.requests.filter((x) => x.path === path); return r[r.length - 1]; }
  ws() { return this.sockets[this.sockets.length - 1]; }
  ably() { return this.sockets.filter((s) => s.url.includes("access_token=")).pop(); }
  // Answers the Ably token exchange: POST /v1/vendor/auth, then the vendor's requestToken.
  async ablyToken(flush, token = "tk-1") {
    await flush();
    this.last("/v1/vendor/auth").respond(200, TOKEN_REQUEST);
    await flush();
    this.last("/keys/app-key/requestToken").respond(200, { token, keyName: "app-key", issued: T0, expires: T0 + 600000 });
    await flush();
    return this.ably();
  }
  es() { return this.sources[this.sources.length - 1]; }
  pusher() { return this.pushers[this.pushers.length - 1]; }
}

// Starts the fake clock and a client. `route` answers GET /v1/route (null: leave it pending);
// `opts` (or opts(net)) override connect() options.
export function start(t, { route = ROUTE, random = () => 0.5, opts = {} } = {}) {
  mock.timers.enable({ apis: ["setTimeout", "Date"], now: T0 });
  const net = new Net();
  if (route) net.auto.set("GET /v1/route", () => [200, typeof route === "function" ? route() : route]);
  const log = [];
  const statuses = [];
  const rt = Understudy.connect({
    url: "http://us.test", token: "tok", WebSocket: net.WebSocket, EventSource: net.EventSource,
    fetch: net.fetch, vendor: { Pusher: net.Pusher }, random, window: null, document: null,
    ...(typeof opts === "function" ? opts(net) : opts),
  });
  rt.on("status", (s) => statuses.push(`${s.state}/${s.via}`));
  t.after(() => { rt.close(); mock.timers.reset(); });
  // Subscribes and records every delivery as "E:seq" and every reset as "reset:E:seq:reason".
  const sub = (channel, since) => rt.subscribe(channel, {
    since,
    onEvent: (e) => log.push(`${e.epoch}:${e.seq}`),
    onReset: (i) => log.push(`reset:${i.epoch}:${i.seq}:${i.reason}`),
  });
  // Moves the clock in small steps so that timers see the time they were due at.
  const advance = async (ms, step = 50) => {
    for (let done = 0; done < ms; done += step) {
      mock.timers.tick(Math.min(step, ms - done));
      await flush();
    }
  };
  return { rt, net, log, statuses, sub, advance, flush };
}
